"""Re-make the committed golden files (run only when the format or model changes on purpose).

    python -m tests.make_golden            # tiny-model goldens (format and decode path; colour and gray)
    python -m tests.make_golden --shipped  # shipped-model golden (after shipping new weights)

Writes tests/data/golden-<name>.sic, the decoded reference PNGs and a JSON of
the exact decoded latent symbols' SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
SOURCE = DATA / "golden-source.png"
CASES = {"det": dict(spread=0.0, level=None, seed=0), "l3-s7": dict(spread=2.0, level=3, seed=7)}


def golden_source(name: str):
    """The image a golden file encodes: the committed PNG, in gray for the grayscale golden
    (header flag bit 0)."""
    from PIL import Image

    return Image.open(SOURCE).convert("L") if name.endswith("-gray") else SOURCE


def latent_digest(codec, data: bytes, level: int | None) -> str:
    """SHA-256 of the decoded integer latents: must match bit for bit on every machine."""
    parsed = codec.parse(data)
    _, y = codec.decode_latents(parsed, len(parsed.levels) if level is None else level)
    return hashlib.sha256(np.ascontiguousarray(y, dtype="<i4").tobytes()).hexdigest()


def make(name: str, weights: Path | None) -> None:
    from sicc import Codec

    codec = Codec.load(weights)
    data = codec.encode(golden_source(name))
    (DATA / f"golden-{name}.sic").write_bytes(data)
    expected = {"model_id": codec.model_id.hex(), "bytes": len(data), "cases": {}}
    for case, kw in CASES.items():
        image = codec.decode(data, **kw)[0]
        image.save(DATA / f"golden-{name}-{case}.png")
        expected["cases"][case] = {**kw, "latent_sha256": latent_digest(codec, data, kw["level"])}
    (DATA / f"golden-{name}.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"golden-{name}: {len(data)} bytes, model {codec.model_id.hex()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shipped", action="store_true")
    args = parser.parse_args()
    if args.shipped:
        make("shipped", None)
        return
    tiny = DATA / "golden-tiny.npz"
    if not tiny.exists():
        from tests.conftest import make_tiny_weights

        make_tiny_weights(tiny, seed=0)
    make("tiny", tiny)
    make("tiny-gray", tiny)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
