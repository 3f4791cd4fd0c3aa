"""``python -m sicc.train``: train, pack a crop set, export shipped weights.

    python -m sicc.train run --steps 20000            # continues from the shipped weights
    python -m sicc.train run --init scratch --steps 20000
    python -m sicc.train run --resume runs/main/checkpoint.pt --steps 30000
    python -m sicc.train pack -o crops.npz            # <= 40 MB, travels to a GPU machine
    python -m sicc.train run --pack crops.npz --device cuda
    python -m sicc.train export runs/main/checkpoint.pt -o sicc/weights/sicc-default.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..model.config import TINY, ModelConfig
from .data import CropSampler, default_train_dir, load_folder, load_pack, write_pack
from .loop import Trainer, TrainSettings, run
from .objective import LossSettings, SICTrainable


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sicc.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train (or continue training) the model")
    r.add_argument("--init", default="shipped",
                   help="'shipped' (default), 'scratch', or a weights file to start from")
    r.add_argument("--resume", type=Path, help="checkpoint to resume exactly (optimizer, RNG, data order)")
    r.add_argument("--out", type=Path, default=Path("runs/main"), help="run folder: checkpoint.pt, log.jsonl")
    r.add_argument("--data", type=Path, default=None, help="folder of training photos")
    r.add_argument("--pack", type=Path, default=None, help="crop pack from 'pack' instead of --data")
    r.add_argument("--config", choices=["default", "tiny"], default="default")
    r.add_argument("--hidden", type=int, default=None, help="override transform width (scratch only)")
    r.add_argument("--steps", type=int, default=1000, help="train until this global step")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--crop", type=int, default=128)
    r.add_argument("--lr", type=float, default=1e-4)
    r.add_argument("--samples", type=int, default=1, help="M sampled details per step")
    r.add_argument("--warmup-steps", type=int, default=0)
    r.add_argument("--checkpoint-every", type=int, default=100)
    r.add_argument("--device", default="cpu")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("pack", help="pre-cut a compact crop set (JPEG q95) to carry to a GPU machine")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--max-mb", type=float, default=40.0)

    e = sub.add_parser("export", help="turn a checkpoint into a shipped weights file")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--log", type=Path, action="append", default=[], help="training logs to summarize")
    return parser


def _initial_net(args: argparse.Namespace) -> SICTrainable:
    if args.init == "scratch":
        config = TINY if args.config == "tiny" else ModelConfig()
        if args.hidden:
            config = replace(config, hidden=args.hidden)
        return SICTrainable(config)
    from ..model import weights

    path = weights.default_weights_path() if args.init == "shipped" else Path(args.init)
    return weights.load_trainable(path)


def _cmd_run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        from .loop import load_checkpoint_config

        net = SICTrainable(load_checkpoint_config(args.resume))
    else:
        net = _initial_net(args)
    images = load_pack(args.pack) if args.pack else load_folder(args.data or default_train_dir(), args.crop)
    from .perceptual import LPIPSLoss

    settings = TrainSettings(
        steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr, seed=args.seed,
        device=args.device, warmup_steps=args.warmup_steps, checkpoint_every=args.checkpoint_every,
        loss=LossSettings(samples=args.samples),
    )
    trainer = Trainer(net, CropSampler(images, args.crop, args.batch, seed=args.seed), LPIPSLoss(), settings)
    if args.resume:
        trainer.load_state_dict(torch.load(args.resume, map_location=args.device, weights_only=False))
    print(f"training {sum(p.numel() for p in net.model.parameters()) / 1e6:.2f} M parameters "
          f"on {len(images)} images from step {trainer.step} to {args.steps}", file=sys.stderr)
    run(trainer, args.out / "checkpoint.pt", args.out / "log.jsonl", progress=not args.no_progress)


def _cmd_pack(args: argparse.Namespace) -> None:
    images = load_folder(args.data or default_train_dir(), args.crop)
    n = write_pack(images, args.output, args.crop, int(args.max_mb * 1e6))
    print(f"wrote {n} crops of {args.crop}px to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


def _cmd_export(args: argparse.Namespace) -> None:
    from ..model import weights

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    net = SICTrainable(ModelConfig.from_dict(state["config"]))
    net.load_state_dict(state["net"])
    summary = weights.summarize_logs(args.log) if args.log else {}
    summary["step"] = int(state["step"])
    model_id = weights.export_weights(net, args.output, summary)
    print(f"exported {args.output} (model id {model_id})")
    if args.log:
        log_out = args.output.with_name("training-log.jsonl")
        rows = weights.compact_log(args.log)
        log_out.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {log_out} ({len(rows)} rows, 50-step means)")


def main(argv: list[str] | None = None) -> None:
    args = _build_parser().parse_args(argv)
    {"run": _cmd_run, "pack": _cmd_pack, "export": _cmd_export}[args.command](args)


if __name__ == "__main__":
    main()
