"""What a wider network costs: training step and Kodak encode/decode time per hidden width.

    python scripts/width_cost.py [--hidden 64,96,128] [--steps 4] [--images 3] [--threads 2]

For each width, the shipped weights widened to it (``sicc.train.widen``: same function, more
channels) are timed twice: the mean training step of the real objective, bf16 autocast with
channels_last, batch 8 of 256x256 random crops (``sicc.train.profile``, as ``make profile``),
and the runtime's in-process encode and full decode of the first Kodak images through a
weights file exported from that network (the benchmark's ``sicc_inprocess``, which issue #10
bounds at 1 s a decode on 2 cores). Prints a markdown table and the load average before and
after: pause training while it runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from pathlib import Path

import torch

from sicc.bench.images import default_kodak_dir, load_images
from sicc.bench.speed import SpeedSettings, sicc_inprocess
from sicc.codec import Codec
from sicc.model.weights import default_weights_path
from sicc.train.export import export_weights, load_trainable
from sicc.train.perceptual import LPIPSLoss
from sicc.train.profile import Variant, profile_variant
from sicc.train.widen import widen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", default="64,96,128", help="comma-separated widths (>= the shipped one)")
    parser.add_argument("--steps", type=int, default=4, help="profiled training steps per width")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--images", type=int, default=3, help="Kodak images timed for encode/decode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    shipped = load_trainable(default_weights_path())
    images = load_images(default_kodak_dir(), args.images)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(args.batch, 3, args.crop, args.crop, generator=gen) for _ in range(args.steps)]
    # A whole untimed pass first: a short warm-up left seconds of one-off cost in the first width's steps.
    profile_variant(copy.deepcopy(shipped), LPIPSLoss(), batches, Variant("bf16", True))
    before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in (int(h) for h in args.hidden.split(",")):
            net = widen(shipped, hidden)
            step = profile_variant(copy.deepcopy(net), LPIPSLoss(), batches, Variant("bf16", True))
            path = Path(tmp) / f"h{hidden}.npz"
            export_weights(net, path, {"note": f"shipped weights widened to {hidden}"})
            codec = Codec.load(path)
            speed = sicc_inprocess(codec, SpeedSettings(images=images, repeats=args.repeats))
            params = sum(p.numel() for p in net.model.parameters())
            rows.append((hidden, params, step["total_ms"], speed["encode_s"], speed["decode_s"]))
            print(f"hidden {hidden}: {step['total_ms']:.0f} ms a step, decode {speed['decode_s']:.3f} s", flush=True)
    after = os.getloadavg()
    base = rows[0]
    print(f"\n| hidden | parameters | training step, ms (bf16 + channels_last, batch {args.batch} of {args.crop}²) "
          f"| × | Kodak encode, s | Kodak decode, s | × |")
    print("|---|---|---|---|---|---|---|")
    for hidden, params, step_ms, enc, dec in rows:
        print(f"| {hidden} | {params / 1e6:.2f} M | {step_ms:.0f} | {step_ms / base[2]:.2f} | {enc:.3f} | {dec:.3f} "
              f"| {dec / base[4]:.2f} |")
    print(f"\n{torch.get_num_threads()} threads; Kodak: median of {args.repeats} runs, then of the first "
          f"{len(images)} images (in-process, deterministic full decode); load average "
          f"{before[0]:.2f} {before[1]:.2f} {before[2]:.2f} before, {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} after")


if __name__ == "__main__":
    main()
