"""The SIC container, version 1 (specified byte by byte in formats/sic-v1.md).

    header (32 bytes) | chunk* ;  chunk = type(4) | length u32 | payload | crc32(type+payload)

Chunks come in a fixed order: optional ICCP and EXIF, then HYPR (the coded
hyper latent z), then LEVL chunks for levels 1, 2, ... Any prefix that ends
at a chunk boundary after HYPR is itself a valid file, so truncation is a byte
cut. This module reads and writes that structure and holds the limits that can
be checked from it without the model: the decode budget (padded pixels), the
largest file a header allows (so input is read with a cap), and the word
framing of the coded payloads. It never decodes a payload.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptError, ImageTooLargeError, NotSicError, TruncatedError, UnsupportedError, too_large_message
from .model.geometry import padded_size as _padded_height_width

MAGIC = b"\x8bSIC\r\n\x1a\n"
VERSION = 1
HEADER_SIZE = 32
CHUNK_OVERHEAD = 12
MAX_DIMENSION = 1 << 20
_HEADER = struct.Struct("<8sBBBBII8sI")
_CHUNK_HEAD = struct.Struct("<4sI")

CHUNK_ICCP = b"ICCP"
CHUNK_EXIF = b"EXIF"
CHUNK_HYPR = b"HYPR"
CHUNK_LEVL = b"LEVL"
_METADATA_CHUNKS = (CHUNK_ICCP, CHUNK_EXIF)

FLAG_GRAYSCALE = 0x01
"""Header flag bit 0: the source was gray; decoders return one gray channel (formats/sic-v1.md)."""
FLAG_CENTRED = 0x02
"""Header flag bit 1: the image sits in the middle of a canvas 64 pixels larger on each axis
(small images; formats/sic-v1.md, "Geometry")."""
KNOWN_FLAGS = FLAG_GRAYSCALE | FLAG_CENTRED

MAX_METADATA_BYTES = 1 << 24
"""Largest ICCP or EXIF payload (16 MiB): larger metadata is not carried over by the encoder."""

MAX_CODED_BYTES_PER_PIXEL = 4
"""Bound on the coded bytes (HYPR and LEVL payloads) per padded pixel. A range-coded symbol costs
at most 24 bits plus a tiny fraction; a model with at most 256 latent and 1024 hyper channels
codes at most 1.25 symbols per padded pixel, under 3.8 bytes."""

_CODED_CHUNK_SLACK = 32
"""Per coded chunk: framing (12), the level byte (1) and the range coder's final words."""

READ_PIECE = 1 << 20
"""Input is read in pieces of this size, so a cap stops it early and Ctrl-C is seen between pieces."""

NOT_SIC_HEAD = 1 << 16
"""Bytes kept (read, at most) from data whose signature is not SIC's, so a caller can tell what it
is (e.g. a PNG given to decode) without reading the rest."""


def padded_size(width: int, height: int, flags: int = 0) -> tuple[int, int]:
    """(width, height) of the canvas the codec works at: padded to multiples of 64, and one more
    block each way for a centred image (header ``flags``; model.geometry)."""
    ph, pw = _padded_height_width(height, width, bool(flags & FLAG_CENTRED))
    return pw, ph


def padded_pixels(width: int, height: int, flags: int = 0) -> int:
    """What a decode (or encode) of a ``width`` x ``height`` image costs: its padded pixel count."""
    pw, ph = padded_size(width, height, flags)
    return pw * ph


def pixel_limit(max_pixels: int | None = None) -> int | None:
    """An explicit budget, else ``sicc.MAX_IMAGE_PIXELS`` read at call time (like Pillow's)."""
    if max_pixels is not None:
        return max_pixels
    from . import MAX_IMAGE_PIXELS

    return MAX_IMAGE_PIXELS


def check_pixel_budget(width: int, height: int, max_pixels: int | None,
                       error: type[ImageTooLargeError] = ImageTooLargeError, flags: int = 0) -> None:
    """Refuse a size whose padded pixel count is over ``max_pixels`` (None: no budget)."""
    if max_pixels is not None and padded_pixels(width, height, flags) > max_pixels:
        raise error(too_large_message(width, height, padded_size(width, height, flags), max_pixels))


def max_file_bytes(width: int, height: int, model_levels: int, flags: int = 0) -> int:
    """The largest valid SIC file of this size: header, the two metadata chunks at their largest,
    and the coded chunks at ``MAX_CODED_BYTES_PER_PIXEL`` (formats/sic-v1.md, "Size bound")."""
    return (HEADER_SIZE + 2 * (CHUNK_OVERHEAD + MAX_METADATA_BYTES) + (model_levels + 1) * _CODED_CHUNK_SLACK
            + MAX_CODED_BYTES_PER_PIXEL * padded_pixels(width, height, flags))


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    model_id: bytes
    model_levels: int
    flags: int = 0

    def pack(self) -> bytes:
        body = _HEADER.pack(MAGIC, VERSION, self.flags, self.model_levels, 0,
                            self.width, self.height, self.model_id, 0)[:-4]
        return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class SicFile:
    """A parsed file: header, metadata, coded z, and the coded levels present."""

    header: Header
    hyper: bytes
    levels: list[bytes] = field(default_factory=list)
    icc_profile: bytes | None = None
    exif: bytes | None = None
    chunk_ends: list[int] = field(default_factory=list)  # byte offset after HYPR, LEVL 1, LEVL 2, ...
    truncated: bool = False  # cut inside a chunk
    corrupt_level: int | None = None  # 1-based level whose CRC failed (decoding stopped before it)
    corrupt_reason: str = ""


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(payload)) + payload + struct.pack("<I", zlib.crc32(kind + payload))


def write(header: Header, hyper: bytes, levels: list[bytes],
          icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """The file bytes. Metadata over ``MAX_METADATA_BYTES`` is left out with a warning; coded data
    over the size bound (impossible for a model within the bound's channel counts) is an error,
    so sicc never writes a file that it would refuse to read."""
    icc_profile = _fitting_metadata("ICC profile", icc_profile)
    exif = _fitting_metadata("EXIF block", exif)
    parts = [header.pack()]
    if icc_profile:
        parts.append(_chunk(CHUNK_ICCP, icc_profile))
    if exif:
        parts.append(_chunk(CHUNK_EXIF, exif))
    parts.append(_chunk(CHUNK_HYPR, hyper))
    for index, coded in enumerate(levels, 1):
        parts.append(_chunk(CHUNK_LEVL, bytes([index]) + coded))
    data = b"".join(parts)
    if len(data) > max_file_bytes(header.width, header.height, header.model_levels, header.flags):
        raise ValueError(f"coded data of {len(data)} bytes exceeds the format's size bound for "
                         f"{header.width}x{header.height}")
    return data


def _fitting_metadata(what: str, payload: bytes | None) -> bytes | None:
    if payload and len(payload) > MAX_METADATA_BYTES:
        import warnings

        from .errors import SiccWarning

        warnings.warn(f"{what} of {len(payload)} bytes is over the format's {MAX_METADATA_BYTES} bytes; "
                      "not carried over", SiccWarning, stacklevel=4)
        return None
    return payload


def parse_header(data: bytes, max_pixels: int | None = None) -> Header:
    """Check magic, version, CRC and sizes before anything is allocated."""
    if not data:
        raise TruncatedError("file is empty")
    head = data[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise NotSicError("not a SIC file (bad signature)")
    if len(data) < HEADER_SIZE:
        raise TruncatedError(f"file is truncated: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    magic, version, flags, levels, reserved, width, height, model_id, crc = _HEADER.unpack_from(data)
    if version != VERSION:
        raise UnsupportedError(f"SIC version {version} is not supported (this sicc reads version {VERSION})")
    if zlib.crc32(data[: HEADER_SIZE - 4]) != crc:
        raise CorruptError("header is corrupt (checksum mismatch)")
    if flags & ~KNOWN_FLAGS or reserved:
        raise UnsupportedError(f"unknown header flags 0x{flags:02x}/0x{reserved:02x}")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise CorruptError(f"image size {width}x{height} is outside 1..{MAX_DIMENSION}")
    if not 1 <= levels <= 255:
        raise CorruptError(f"model level count {levels} is invalid")
    check_pixel_budget(width, height, max_pixels, flags=flags)
    return Header(width, height, model_id, levels, flags)


def read(source, max_pixels: int | None = None) -> bytes:
    """The bytes of a SIC file from a path, a binary file object (e.g. ``sys.stdin.buffer``) or
    bytes, read in bounded pieces: the signature and header are checked from the first 32 bytes
    (with the decode budget ``max_pixels``, None: none), then the chunks are read one by one, each
    checked from its 8-byte head before its payload is read (:func:`_read_chunks`), never past the
    largest size that header allows (:func:`max_file_bytes`) and never past the first chunk at which
    :func:`parse` stops. Not a SIC file, too large a size, a chunk that cannot start a valid file, or
    more bytes than the bound are refused before the rest is read; reading in pieces keeps Ctrl-C
    working. OSError from opening or reading propagates."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        try:
            header = parse_header(data[:HEADER_SIZE], max_pixels)
        except NotSicError as exc:
            exc.head = data[:NOT_SIC_HEAD]
            raise
        _check_file_size(header, len(data))
        return data
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            return read(handle, max_pixels)
    head = read_up_to(source, HEADER_SIZE)
    try:
        header = parse_header(head, max_pixels)
    except NotSicError as exc:
        exc.head = head + read_up_to(source, NOT_SIC_HEAD - len(head))
        raise
    size = _regular_file_size(source)  # a file on disk: its size is checked before it is read
    if size is not None:
        _check_file_size(header, size)
    return head + _read_chunks(source, header)


def _read_chunks(handle, header: Header) -> bytes:
    """The chunks after the header, read chunk by chunk, each checked from its 8-byte head before
    its payload is read. The payloads a file can use (ICCP, EXIF, HYPR, then LEVL 1..levels) are
    read up to the size bound (one byte past it is an error; metadata over its limit is refused
    from the head). A chunk that :func:`parse` will not use (another type, a level past the
    model's) ends the reading, with at most ``STRAY_CHUNK_BYTES`` of it kept so that parse can say
    what is wrong: a header followed by /dev/zero ends after 44 bytes."""
    cap = max_file_bytes(header.width, header.height, header.model_levels, header.flags)
    parts: list[bytes] = []
    total, seen_hyper, levels = HEADER_SIZE, False, 0
    while True:
        head = read_up_to(handle, _CHUNK_HEAD.size)
        parts.append(head)
        total += len(head)
        if len(head) < _CHUNK_HEAD.size:
            break  # the end of the data, or a cut inside a chunk head: parse says which
        kind, length = _CHUNK_HEAD.unpack(head)
        if not seen_hyper:
            stray = kind not in (CHUNK_HYPR, *_METADATA_CHUNKS)
            if kind in _METADATA_CHUNKS and length > MAX_METADATA_BYTES:
                raise CorruptError(_metadata_too_long(kind, length))
            seen_hyper = kind == CHUNK_HYPR
        else:
            levels += 1
            stray = kind != CHUNK_LEVL or levels > header.model_levels
        wanted = min(length + 4, STRAY_CHUNK_BYTES) if stray else length + 4
        body = read_up_to(handle, min(wanted, cap + 1 - total))
        parts.append(body)
        total += len(body)
        if total > cap:
            raise CorruptError(_too_large(header, cap))
        if len(body) < length + 4 or stray:
            break
    return b"".join(parts)


STRAY_CHUNK_BYTES = 1 << 16
"""At most this much of a chunk that cannot be used is read (enough for its CRC when it is short)."""


def _metadata_too_long(kind: bytes, length: int) -> str:
    return f"{kind.decode()} chunk is corrupt ({length} bytes, over the format's {MAX_METADATA_BYTES})"


def _too_large(header: Header, cap: int) -> str:
    return f"file is larger than a {header.width}x{header.height} SIC file can be (at most {cap} bytes)"


def _regular_file_size(handle) -> int | None:
    """The size of the SIC data in a regular file, once its 32-byte header has been read: the
    header plus what remains after it (None for pipes, terminals and devices, whose size says
    nothing)."""
    try:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            return None
        return status.st_size - handle.tell() + HEADER_SIZE
    except (OSError, ValueError, AttributeError):
        return None


def read_up_to(handle, limit: int) -> bytes:
    """At most ``limit`` bytes from ``handle``, in pieces; fewer only at the end of the data."""
    pieces, total = [], 0
    while total < limit:
        piece = handle.read(min(READ_PIECE, limit - total))
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
    return b"".join(pieces)


def _check_file_size(header: Header, size: int) -> None:
    cap = max_file_bytes(header.width, header.height, header.model_levels, header.flags)
    if size > cap:
        raise CorruptError(_too_large(header, cap))


def parse(data: bytes, max_pixels: int | None = None, strict: bool = False) -> SicFile:
    """Parse a whole or cut file.

    A cut inside a LEVL chunk, or a level whose CRC fails, ends the level list
    (``truncated`` / ``corrupt_level`` tell which) unless ``strict``, which
    raises instead. Anything wrong before the first level always raises.
    """
    header = parse_header(data, max_pixels)
    _check_file_size(header, len(data))
    pos = HEADER_SIZE
    icc = exif = None
    hyper: bytes | None = None
    result: SicFile | None = None
    while pos < len(data):
        kind, payload, end, problem = _read_chunk(data, pos)
        if result is None:  # before and at HYPR every chunk must be whole and intact
            if problem:
                if problem == "truncated":
                    where = f"the {_chunk_name(kind)} chunk" if kind else "a chunk header"
                    raise TruncatedError(f"file is truncated inside {where}, before any level")
                raise CorruptError(f"{_chunk_name(kind)} chunk is corrupt ({problem})")
            if kind in _METADATA_CHUNKS:
                # the spec's order: at most one ICCP, then at most one EXIF, then HYPR
                if exif is not None or (kind == CHUNK_ICCP and icc is not None):
                    raise CorruptError(f"{kind.decode()} chunk out of order")
                if len(payload) > MAX_METADATA_BYTES:
                    raise CorruptError(f"{kind.decode()} chunk is corrupt ({len(payload)} bytes, "
                                       f"over the format's {MAX_METADATA_BYTES})")
                if kind == CHUNK_ICCP:
                    icc = payload
                else:
                    exif = payload
            elif kind == CHUNK_HYPR:
                problem = coded_payload_problem(len(payload))
                if problem:
                    raise CorruptError(f"HYPR chunk is corrupt ({problem})")
                hyper = payload
                result = SicFile(header, hyper, icc_profile=icc, exif=exif, chunk_ends=[end])
            else:
                raise CorruptError(f"unexpected chunk {kind!r} before the hyperprior")
            pos = end
            continue
        level = len(result.levels) + 1
        if problem == "truncated":
            if strict:
                raise TruncatedError(f"file is truncated inside level {level}")
            result.truncated = True
            break
        if problem is None and kind != CHUNK_LEVL:
            problem = f"a {_chunk_name(kind)} chunk where the LEVL chunk of level {level} belongs"
        elif problem is None and not payload:
            problem = "an empty LEVL chunk"
        elif problem is None and payload[0] != level:
            problem = f"its level byte says level {payload[0]}"
        if problem is None and level > header.model_levels:
            problem = f"more levels than the model's {header.model_levels}"
        if problem is None:
            problem = coded_payload_problem(len(payload) - 1)
        if problem:
            if strict:
                raise CorruptError(f"level {level} is corrupt ({problem})")
            result.corrupt_level, result.corrupt_reason = level, problem
            break
        result.levels.append(payload[1:])
        result.chunk_ends.append(end)
        pos = end
    if result is None:
        raise TruncatedError("file is truncated: it ends before the hyperprior chunk")
    return result


def _chunk_name(kind: bytes) -> str:
    """A chunk type for messages: its four letters, or their escaped bytes when not printable."""
    text = kind.decode("latin-1")
    return text if text.isascii() and text.isprintable() else repr(kind)[2:-1]


def coded_payload_problem(length: int) -> str | None:
    """Why ``length`` bytes cannot be range-coded data of a non-empty latent, or None. Every
    chunk codes at least one symbol, and the range coder writes whole 32-bit words: at least one."""
    if length == 0:
        return "no coded data, where at least one 32-bit word is needed"
    if length % 4:
        return f"coded data of {length} bytes is not a whole number of 32-bit words"
    return None


def _chunk_name(kind: bytes) -> str:
    """A chunk type for messages: as is when printable ASCII, else escaped, so that a forged
    type can never put a newline or a terminal control sequence into an error message."""
    return kind.decode("ascii") if kind and all(0x20 < b < 0x7F for b in kind) else repr(kind)


def _read_chunk(data: bytes, pos: int) -> tuple[bytes, bytes, int, str | None]:
    """(type, payload, end offset, problem) of the chunk at ``pos``; problem is None,
    'truncated' or a reason for corruption. The length is checked against the data
    actually present before any slice is taken."""
    if len(data) - pos < _CHUNK_HEAD.size:
        return b"", b"", len(data), "truncated"
    kind, length = _CHUNK_HEAD.unpack_from(data, pos)
    end = pos + _CHUNK_HEAD.size + length + 4
    if end > len(data):
        return kind, b"", len(data), "truncated"
    payload = data[pos + _CHUNK_HEAD.size : end - 4]
    (crc,) = struct.unpack_from("<I", data, end - 4)
    if zlib.crc32(kind + payload) != crc:
        return kind, payload, end, "checksum mismatch"
    return kind, payload, end, None


def prefix_length(parsed: SicFile, levels: int) -> int:
    """Bytes of the file prefix that holds the hyperprior and levels 1..``levels``."""
    if not 0 <= levels <= len(parsed.levels):
        raise ValueError(f"level must be in 0..{len(parsed.levels)}")
    return parsed.chunk_ends[levels]
