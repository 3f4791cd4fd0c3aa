"""Classical codecs the benchmark compares against: JPEG, WebP, AVIF and JPEG XL.

Each codec is a round trip ``PIL image -> (bytes, decoded PIL image)`` at one
point of its quality knob. A codec whose library is missing is reported as
unavailable (with the reason) instead of failing the whole run.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image, features

Roundtrip = Callable[[Image.Image, float], tuple[bytes, Image.Image]]


@dataclass(frozen=True)
class Baseline:
    """One classical codec: a name, its quality knob, the sweep and how it is run."""

    name: str
    label: str
    knob: str  # the parameter swept: "quality" or "distance"
    sweep: tuple[float, ...]  # ordered from lowest to highest rate
    quick_sweep: tuple[float, ...]
    roundtrip: Roundtrip
    library: str
    settings: dict = field(default_factory=dict)

    def available(self) -> tuple[bool, str]:
        """Whether this codec can run here, and why not."""
        try:
            self.roundtrip(Image.new("RGB", (16, 16), (128, 64, 32)), self.sweep[-1])
            return True, ""
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
            return False, f"{type(exc).__name__}: {exc}"


def _pillow_roundtrip(fmt: str, **options) -> Roundtrip:
    def run(img: Image.Image, quality: float) -> tuple[bytes, Image.Image]:
        buf = io.BytesIO()
        img.save(buf, format=fmt, quality=int(quality), **options)
        data = buf.getvalue()
        decoded = Image.open(io.BytesIO(data))
        decoded.load()
        return data, decoded.convert("RGB")

    return run


def _jxl_roundtrip(effort: int) -> Roundtrip:
    def run(img: Image.Image, distance: float) -> tuple[bytes, Image.Image]:
        import imagecodecs

        data = imagecodecs.jpegxl_encode(np.asarray(img.convert("RGB")), distance=float(distance), effort=effort)
        return bytes(data), Image.fromarray(imagecodecs.jpegxl_decode(data)).convert("RGB")

    return run


def _pillow_version(codec: str) -> str:
    import PIL

    return f"Pillow {PIL.__version__} ({codec} {features.version(codec) or 'n/a'})"


def _jxl_version() -> str:
    try:
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__} ({imagecodecs.jpegxl_version()})"
    except Exception:  # noqa: BLE001
        return "imagecodecs (unavailable)"


JXL_EFFORT = 7
AVIF_SPEED = 6


def baselines() -> list[Baseline]:
    """The codecs and their sweeps (Kodak: about 0.07-1.3 bpp where the codec gets that low)."""
    return [
        Baseline(
            "jpeg", "JPEG", "quality",
            (2, 4, 8, 15, 30, 50, 75),
            (5, 20, 75),
            _pillow_roundtrip("JPEG", subsampling="4:2:0", optimize=True),
            _pillow_version("jpg"), {"subsampling": "4:2:0", "optimize": True},
        ),
        Baseline(
            "webp", "WebP", "quality",
            (0, 5, 15, 30, 50, 75),
            (5, 45, 90),
            _pillow_roundtrip("WEBP", method=6),
            _pillow_version("webp"), {"method": 6},
        ),
        Baseline(
            "avif", "AVIF", "quality",
            (5, 15, 25, 35, 45, 60),
            (15, 45, 75),
            _pillow_roundtrip("AVIF", speed=AVIF_SPEED, subsampling="4:2:0"),
            _pillow_version("avif"), {"speed": AVIF_SPEED, "subsampling": "4:2:0"},
        ),
        Baseline(
            "jxl", "JPEG XL", "distance",
            (25.0, 15.0, 10.0, 6.0, 4.0, 2.5, 1.5),
            (15.0, 5.0, 1.5),
            _jxl_roundtrip(JXL_EFFORT),
            _jxl_version(), {"effort": JXL_EFFORT},
        ),
    ]
