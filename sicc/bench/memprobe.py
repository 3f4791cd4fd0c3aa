"""One codec operation in a fresh process, so its peak RSS can be measured from outside.

    python -m sicc.bench.memprobe sicc-encode IN.png OUT.sic [--weights W] [--max-pixels P]
    python -m sicc.bench.memprobe sicc-decode IN.sic OUT.png [--weights W] [--max-pixels P]
    python -m sicc.bench.memprobe sicc-load - - [--weights W]     (import + model load only)

A size over sicc's default pixel budget (a 16K frame) needs ``--max-pixels`` raised explicitly,
as a user would have to.

(The JPEG XL / AVIF probes are plain ``python -c`` snippets in speed.py: running
them through this module would import sicc, numpy and onnxruntime into the probe.)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _codec(weights: str | None):
    import sicc

    return sicc.Codec.load(Path(weights)) if weights else sicc.Codec.default()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sicc.bench.memprobe")
    parser.add_argument("op", choices=["sicc-encode", "sicc-decode", "sicc-load"])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-pixels", type=int, default=None, help="pixel budget (default: sicc's)")
    args = parser.parse_args(argv)

    codec = _codec(args.weights)
    if args.op == "sicc-encode":  # as the sicc command reads it: sicc's pixel limit, not Pillow's
        Path(args.dst).write_bytes(codec.encode(args.src, max_pixels=args.max_pixels, threads=args.threads))
    elif args.op == "sicc-decode":
        codec.decode(args.src, samples=1, seed=0, spread=0.0, max_pixels=args.max_pixels,
                     threads=args.threads)[0].save(args.dst)


if __name__ == "__main__":
    main()
