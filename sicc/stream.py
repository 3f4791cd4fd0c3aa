"""Operations on SIC data that need no model: inspecting and truncating files.

Kept free of torch so that ``sicc info`` and ``sicc truncate`` start instantly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from . import container
from .errors import ArgumentError, BudgetError


@dataclass(frozen=True)
class LevelInfo:
    index: int  # 1-based
    bytes: int  # size of this level's chunk, framing included
    cumulative_bytes: int  # file prefix that ends with this level
    cumulative_bpp: float


@dataclass(frozen=True)
class FileInfo:
    width: int
    height: int
    model_id: str
    model_levels: int
    file_bytes: int
    base_bytes: int  # header, metadata and hyperprior: the smallest valid prefix
    levels: list[LevelInfo] = field(default_factory=list)
    truncated: bool = False
    corrupt_level: int | None = None
    corrupt_reason: str = ""  # why that level is refused (its CRC, its level byte, ...)
    has_icc_profile: bool = False
    has_exif: bool = False
    grayscale: bool = False  # header flag: decoders return one gray channel

    @property
    def complete(self) -> bool:
        return not self.truncated and self.corrupt_level is None and len(self.levels) == self.model_levels

    def to_dict(self) -> dict:
        return {**asdict(self), "complete": self.complete}


def _read(source, max_pixels: int | None) -> tuple[bytes, container.SicFile]:
    """Read (bounded, :func:`container.read`) and parse ``source`` under the pixel budget
    ``max_pixels`` (None: ``sicc.MAX_IMAGE_PIXELS``), as decode does: the budget is what bounds
    the bytes a header may make sicc read (4 per padded pixel)."""
    limit = container.pixel_limit(max_pixels)
    data = container.read(source, limit)
    return data, container.parse(data, max_pixels=limit, strict=False)


def file_info(source, max_pixels: int | None = None) -> FileInfo:
    """Structure of a SIC file (bytes, a path or a binary file object, read with
    :func:`container.read`); needs no model (any model id is reported, not checked). A file over
    the pixel budget ``max_pixels`` (default ``sicc.MAX_IMAGE_PIXELS``) is refused from its header."""
    data, parsed = _read(source, max_pixels)
    header = parsed.header
    pixels = header.width * header.height
    ends = parsed.chunk_ends
    levels = [
        LevelInfo(i, ends[i] - ends[i - 1], ends[i], ends[i] * 8 / pixels) for i in range(1, len(ends))
    ]
    return FileInfo(
        width=header.width, height=header.height, model_id=header.model_id.hex(),
        model_levels=header.model_levels, file_bytes=len(data), base_bytes=ends[0], levels=levels,
        truncated=parsed.truncated, corrupt_level=parsed.corrupt_level, corrupt_reason=parsed.corrupt_reason,
        has_icc_profile=parsed.icc_profile is not None, has_exif=parsed.exif is not None,
        grayscale=bool(header.flags & container.FLAG_GRAYSCALE),
    )


def truncate(source, level: int | None = None, max_bytes: int | None = None,
             bpp: float | None = None, at_least_one: bool = False, max_pixels: int | None = None) -> bytes:
    """The longest level prefix of ``source`` (bytes, a path or a binary file object) that fits:
    exactly ``level`` levels, at most ``max_bytes`` bytes, or at most ``bpp`` bits per pixel.
    A byte prefix, nothing rewritten.

    A budget always keeps at least one level: one below level 1 is refused (:class:`BudgetError`)
    with the smallest size that fits (a file of no level decodes to noise), or, with
    ``at_least_one``, level 1 is kept anyway, with a warning that names its size. Only ``level=0``
    asks for the bare hyperprior on purpose. ``max_pixels``: the pixel budget, as for :func:`file_info`."""
    if sum(x is not None for x in (level, max_bytes, bpp)) != 1:
        raise ValueError("give exactly one of level, max_bytes, bpp")
    data, parsed = _read(source, max_pixels)
    ends = parsed.chunk_ends
    if level is not None:
        if not 0 <= level < len(ends):
            raise ArgumentError(f"level {level} is not in the file (it holds levels 1..{len(ends) - 1})"
                             if len(ends) > 1 else f"level {level} is not in the file (it holds no level)")
        return bytes(data[: ends[level]])
    pixels = parsed.header.width * parsed.header.height
    if bpp is not None:
        if not (bpp >= 0 and math.isfinite(bpp)):
            raise ValueError("bpp must be a finite number >= 0")
        max_bytes = int(bpp * pixels / 8)
    smallest = ends[min(1, len(ends) - 1)]
    if max_bytes < smallest and at_least_one and len(ends) > 1:
        import warnings

        from .errors import SiccWarning

        warnings.warn(f"level 1 alone is {smallest} bytes ({smallest * 8 / pixels:.4f} bpp), over the budget of "
                      f"{max_bytes} bytes ({max_bytes * 8 / pixels:.4f} bpp); kept level 1", SiccWarning, stacklevel=2)
        return bytes(data[:smallest])
    if max_bytes < smallest:
        what = "with level 1" if len(ends) > 1 else "(it holds no level)"
        raise BudgetError(f"cannot fit in {max_bytes} bytes ({max_bytes * 8 / pixels:.4f} bpp): the smallest "
                          f"file {what} is {smallest} bytes ({smallest * 8 / pixels:.4f} bpp)", smallest)
    fitting = max(i for i, end in enumerate(ends) if end <= max_bytes)
    return bytes(data[: ends[fitting]])
