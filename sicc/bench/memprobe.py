"""One codec operation in a fresh process, so its peak RSS can be measured from outside.

    python -m sicc.bench.memprobe sicc-encode IN.png OUT.sic [--weights W]
    python -m sicc.bench.memprobe sicc-decode IN.sic OUT.png [--weights W]
    python -m sicc.bench.memprobe sicc-load - - [--weights W]     (import + model load only)
    python -m sicc.bench.memprobe jxl-decode IN.jxl OUT.png
    python -m sicc.bench.memprobe avif-decode IN.avif OUT.png
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _codec(weights: str | None):
    import sicc

    return sicc.Codec.load(Path(weights)) if weights else sicc.Codec.default()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sicc.bench.memprobe")
    parser.add_argument("op", choices=["sicc-encode", "sicc-decode", "sicc-load", "jxl-decode", "avif-decode"])
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    if args.op.startswith("sicc"):
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        codec = _codec(args.weights)
        if args.op == "sicc-encode":
            from PIL import Image

            Path(args.dst).write_bytes(codec.encode(Image.open(args.src).convert("RGB")))
        elif args.op == "sicc-decode":
            codec.decode(Path(args.src).read_bytes(), samples=1, seed=0, spread=0.0)[0].save(args.dst)
    elif args.op == "jxl-decode":
        import imagecodecs
        from PIL import Image

        Image.fromarray(imagecodecs.jpegxl_decode(Path(args.src).read_bytes())).save(args.dst)
    elif args.op == "avif-decode":
        from PIL import Image

        Image.open(args.src).convert("RGB").save(args.dst)


if __name__ == "__main__":
    main()
