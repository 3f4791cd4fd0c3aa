"""``python -m sicc.train``: train, pack a crop set, export shipped weights.

    python -m sicc.train run --steps 20000            # continues from the shipped weights
    python -m sicc.train run --init scratch --steps 20000
    python -m sicc.train run --hidden 96 --minutes 60 --steps 0   # the shipped weights, widened
    python -m sicc.train run --resume runs/main/checkpoint.pt --steps 30000
    python -m sicc.train run --minutes 60 --channels-last   # a wall-clock budget; bf16 where native
    python -m sicc.train pack --photos -o photos.npz  # whole photos, <= 55 MB, for a GPU machine
    python -m sicc.train run --pack photos.npz --device cuda --batch 16 --precision bf16
    python -m sicc.train export runs/main/checkpoint.pt -o sicc/weights/sicc-default.npz
    python -m sicc.train export old-weights.pt -o new.npz   # a sicc-weights-1 file, same model id

A run ends at --steps (also the end of the cosine schedule) or after --minutes,
whichever is first, with a checkpoint; --resume continues it exactly: the
checkpoint carries the run's settings (batch, crop, learning-rate schedule,
seed, channels_last, ...), and an option given on the command line replaces one. With
--steps 0 and --minutes, the schedule's length is set from the measured speed
after the first steps (and kept in the checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..model.config import TINY, ModelConfig
from ..fileio import file_sha256
from .adversarial import DISCRIMINATORS
from .data import CropSampler, default_train_dir, load_folder, load_pack, write_pack, write_photo_pack
from .loop import (RESUMED_SETTINGS, Trainer, TrainSettings, checkpoint_weights, load_checkpoint, read_checkpoint,
                   resolve_precision, resume_schedule, resumed_settings, run)
from .objective import LossSettings, SICTrainable


RUN_DEFAULTS = resumed_settings(TrainSettings())
"""A new run's settings where no option is given: TrainSettings' defaults, one per RESUMED_SETTINGS name
(but see LR_PER_CROP and FRESH_MOMENT_STEPS)."""
LR_PER_CROP = 2e-4 / 64
"""A new run's peak learning rate per crop of its batch: the GPU bursts' 2e-4 at batch 64, scaled linearly
(2.5e-5 at the CPU's batch 8)."""
FRESH_MOMENT_STEPS = 50
"""Steps at learning rate 0 that fill a fresh AdamW's moments when no optimizer state is continued."""


def _build_parser() -> argparse.ArgumentParser:
    d = RUN_DEFAULTS
    parser = argparse.ArgumentParser(prog="python -m sicc.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="train (or continue training) the model")
    r.add_argument("--init", default="shipped",
                   help="'shipped' (default: the shipped weights, continuing the checkpoint they name if it is "
                        "found under $SICC_CHECKPOINTS or runs/), 'scratch', a weights file, or a training "
                        "checkpoint (its network, AdamW moments and weight average, with a new schedule)")
    r.add_argument("--fresh-optimizer", action="store_true",
                   help="with --init CHECKPOINT: take the network only and start a new AdamW")
    r.add_argument("--resume", type=Path,
                   help="checkpoint to resume exactly (optimizer, RNG, data order, and the run's settings: "
                        "the options below marked with a default take the checkpoint's values unless given)")
    r.add_argument("--out", type=Path, default=None,
                   help="run folder: checkpoint.pt, log.jsonl (default: the --resume checkpoint's folder, "
                        "so a continuation extends its run; else runs/main)")
    r.add_argument("--data", type=Path, default=None, help="folder of training photos")
    r.add_argument("--pack", type=Path, default=None, help="crop pack from 'pack' instead of --data")
    r.add_argument("--config", choices=["default", "tiny"], default="default")
    r.add_argument("--hidden", type=int, default=None,
                   help="transform width: from scratch, this width; from weights or a checkpoint with fewer "
                        "hidden channels, that network widened to it, computing the same function "
                        "(sicc.train.widen: the new channels start with zero weights into the old ones)")
    r.add_argument("--steps", type=int, default=None,
                   help="the last global step and the schedule's horizon (default 1000; 0 with --minutes: "
                        "set from the measured speed; on --resume: the checkpoint's)")
    r.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this command")
    # Options that define the run (RESUMED_SETTINGS) default to None: a new run takes RUN_DEFAULTS,
    # --resume the checkpoint's values; either way an option given here wins.
    r.add_argument("--batch", type=int, help=f"crops per step (default {d['batch']})")
    r.add_argument("--crop", type=int, help=f"crop side in pixels (default {d['crop']})")
    r.add_argument("--lr", type=float,
                   help=f"peak learning rate (default for a new run: {LR_PER_CROP * 8:g} at batch 8, i.e. "
                        f"{LR_PER_CROP * 64:g} x batch / 64, the GPU bursts' rate scaled to the batch)")
    r.add_argument("--lr-min", type=float, help=f"learning rate at the end of the cosine decay (default {d['lr_min']:g})")
    r.add_argument("--lr-warmup", type=int, help=f"steps of linear learning-rate warm-up (default {d['lr_warmup']})")
    r.add_argument("--schedule", choices=["cosine", "constant"], help=f"default {d['schedule']}")
    r.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {d['weight_decay']:g})")
    r.add_argument("--clip", type=float, help=f"gradient-norm clipping (0: off; default {d['clip']:g})")
    r.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="bf16: autocast for the transforms and LPIPS (rates stay float32); "
                        "auto (default): bf16 where the device has it natively, else fp32")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format (default off)")
    r.add_argument("--samples", type=int, help=f"M sampled details per step (default {d['samples']})")
    r.add_argument("--texture", type=float,
                   help="weight of a DISTS-like texture/structure distance on the LPIPS features, added to "
                        f"every LPIPS term (default {d['texture']:g}: the objective of method.md)")
    r.add_argument("--dists", type=float,
                   help="weight of DISTS itself (VGG16, the benchmark's metric, in plain torch) on the "
                        "centre 128x128 of the level branch's decode, times the level's LPIPS weight "
                        f"(default {d['dists']:g}: none)")
    r.add_argument("--dists-levels", type=int, metavar="N",
                   help="the --dists term at levels 1..N only: steps above N skip the VGG pass "
                        f"(default {d['dists_levels']}: every level)")
    r.add_argument("--moment-steps", type=int,
                   help="steps at learning rate 0 that fill a fresh AdamW's moments before the schedule (default "
                        f"{FRESH_MOMENT_STEPS} when no optimizer state is continued and the network is trained, else 0)")
    r.add_argument("--ema", type=float, help=f"decay of a moving average of the weights (0: none; default {d['ema']:g}); "
                                             "'export --ema' writes it")
    r.add_argument("--full-weight", type=float,
                   help=f"weight of the all-levels branch L_full (default {d['full_weight']:g}; L_level has 0.5)")
    r.add_argument("--deterministic-share", type=float,
                   help="share of level-branch steps decoded with spread 0, the decode the benchmark scores "
                        f"(default {d['deterministic_share']:g})")
    r.add_argument("--deterministic-from", type=int,
                   help="the lowest level whose steps --deterministic-share applies to: the levels below it "
                        f"keep every step sampled (default {d['deterministic_from']}: all levels)")
    r.add_argument("--low-levels", type=float,
                   help="chance that a step's level is drawn from levels 1..8 (default: the paper's cycle 16..1)")
    r.add_argument("--low-mse", type=float,
                   help=f"factor on the MSE weight of levels 1..8 (default {d['low_mse']:g})")
    r.add_argument("--high-mse", type=float,
                   help=f"factor on the MSE weight of levels 9..16 (default {d['high_mse']:g})")
    r.add_argument("--decoder-only", action=argparse.BooleanOptionalAction,
                   help="train g_s alone (encoder, hyperprior, context network and z prior frozen): no encoder "
                        "backward pass and no consistency term; coded files stay byte-identical")
    r.add_argument("--level-film", action=argparse.BooleanOptionalAction,
                   help="give g_s the level it decodes from: a per-level, per-latent-channel scale and shift "
                        "of its input, zero at first (the same function), trained with g_s (also with "
                        "--decoder-only) and exported in the weights file (sicc.model.level_film)")
    r.add_argument("--inner-film", action=argparse.BooleanOptionalAction,
                   help="also tell g_s's inner layers the level: a per-level, per-channel scale and shift of "
                        "the output of each inverse GDN, zero at first (implies --level-film)")
    r.add_argument("--level-film-lr", type=float,
                   help="factor on the learning rate of the level tables, which get their own AdamW group "
                        f"(default {d['level_film_lr']:g}); new tables move about lr x this per step")
    r.add_argument("--adversarial", type=float,
                   help="weight of an adversarial term on the level branch's decode, times the level's LPIPS "
                        "weight (method.md's optional second stage; a patch discriminator trained alongside, "
                        f"kept in the checkpoint only; default {d['adversarial']:g}: none)")
    r.add_argument("--adversarial-lr", type=float,
                   help=f"the discriminator's learning rate (default {d['adversarial_lr']:g})")
    r.add_argument("--adversarial-warmup", type=int,
                   help="steps a new discriminator trains before its judgement enters g_s's loss "
                        f"(default {d['adversarial_warmup']})")
    r.add_argument("--discriminator", choices=sorted(DISCRIMINATORS),
                   help="with --adversarial: a pixel PatchGAN, or heads on LPIPS' frozen AlexNet features "
                        f"(a projected GAN; default {d['discriminator']})")
    r.add_argument("--validate-every", type=int, default=0,
                   help="score the validation split every N steps and at the end (validation.jsonl; 0: never)")
    r.add_argument("--warmup-steps", type=int, help=f"steps that train only the all-levels branch (default {d['warmup_steps']})")
    r.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint every N steps")
    r.add_argument("--checkpoint-minutes", type=float, default=5.0, help="and every M minutes")
    r.add_argument("--device", default="cpu")
    r.add_argument("--data-on-device", action="store_true",
                   help="hold the photos on --device as uint8 and crop there (GPU)")
    r.add_argument("--seed", type=int, help=f"default {d['seed']}")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("pack", help="a compact training set (JPEG) to carry to a GPU machine")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--photos", action="store_true",
                   help="whole photos re-coded at the best JPEG quality that fits (default: pre-cut crops)")
    p.add_argument("--crop", type=int, default=256, help="crop size; with --photos, the smallest side kept")
    p.add_argument("--max-mb", type=float, default=40.0)

    b = sub.add_parser("bundle", help="everything a GPU burst needs that the repository lacks (see docs/training.md)")
    b.add_argument("-o", "--output", type=Path, default=Path("gpu-bundle"))
    b.add_argument("--data", type=Path, default=None, help="training photos (default: ../shared/data/train)")
    b.add_argument("--crop", type=int, default=256, help="photos with a shorter side are left out")
    b.add_argument("--limit-mb", type=float, default=64 * 1.048576,
                   help="what may travel in one device command (the repository + one part of the bundle), MB")
    b.add_argument("--margin-mb", type=float, default=4.0, help="left free for the repository to grow")
    b.epilog = ("Writes two parts, photos/ and weights/, each of which travels with the repository under "
                "--limit-mb: a burst carries them in two device commands (scripts/gpu-burst.sh stage, then start).")

    f = sub.add_parser("profile", help="time a training step and its parts, fp32 vs bf16 / channels_last")
    f.add_argument("--init", default="shipped", help="as for 'run'")
    f.add_argument("--config", choices=["default", "tiny"], default="default")
    f.add_argument("--hidden", type=int, default=None, help="as for 'run'")
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--crop", type=int, default=256)
    f.add_argument("--steps", type=int, default=8, help="profiled steps per variant (after 2 warm-up steps)")
    f.add_argument("--device", default="cpu")
    f.add_argument("--threads", type=int, default=None)
    f.add_argument("--variants", default="fp32,fp32+cl,bf16,bf16+cl")

    v = sub.add_parser("validate", help="score models on the validation split (levels 1-8; an A/B of runs)")
    v.add_argument("models", nargs="+", type=Path,
                   help="weights files or checkpoints; the second and later are compared with the first")
    v.add_argument("--ema", action="store_true", help="score checkpoints' weight averages")
    v.add_argument("--data", type=Path, default=None, help="training photos (default: ../shared/data/train)")
    v.add_argument("--levels", default="1-8", help="levels to decode, e.g. 1-8 or 2,4,8 (default 1-8)")
    v.add_argument("--spreads", default="0,2", help="sampling spreads (default 0,2)")
    v.add_argument("--json", type=Path, default=None, help="also write the per-model means here")
    v.add_argument("--threads", type=int, default=None)

    sp = sub.add_parser("spreads", help="the real codec's single decode at spreads 0, 1, 2 on the validation photos "
                                        "(the measurement behind the default spread)")
    sp.add_argument("--weights", type=Path, default=None, help="weights file (default: the shipped one)")
    sp.add_argument("--data", type=Path, default=None, help="training photos (default: ../shared/data/train)")
    sp.add_argument("--levels", default="1-8")
    sp.add_argument("--spreads", default="0,1,2")
    sp.add_argument("--json", type=Path, default=None)
    sp.add_argument("--threads", type=int, default=None)

    e = sub.add_parser("export", help="turn a checkpoint (or an old .pt weights file) into a weights file")
    e.add_argument("checkpoint", type=Path, help="checkpoint.pt of a run, or a sicc-weights-1 .pt file")
    e.add_argument("-o", "--output", type=Path, required=True)
    e.add_argument("--log", type=Path, action="append", default=[], help="training logs to summarize")
    e.add_argument("--continues", type=Path, default=None,
                   help="the weights file this training started from: its training history (runs, steps, "
                        "and the training-log.jsonl beside it) comes first in the new file's")
    e.add_argument("--ema", action="store_true",
                   help="export the checkpoint's weight average (run --ema) instead of its last weights")
    e.add_argument("--hardware", action="append", default=None,
                   help="what the checkpoint's run trained on (e.g. 'NVIDIA H200', 'CPU'; repeat for several), "
                        "for a checkpoint saved before runs recorded it")
    return parser


def find_named_checkpoint(path: Path) -> Path | None:
    """The checkpoint a weights file names (``training["checkpoint"]``, its SHA-256), looked for under
    $SICC_CHECKPOINTS (a folder, or several joined by ':') and ./runs; None when it is not found."""
    import os

    from ..model.weights import load_weights

    named = (load_weights(path).training or {}).get("checkpoint") or {}
    digest = named.get("sha256")
    if not digest:
        return None
    roots = [Path(p) for p in os.environ.get("SICC_CHECKPOINTS", "").split(":") if p] + [Path("runs")]
    for root in roots:
        for candidate in sorted(root.rglob("*.pt")) if root.is_dir() else []:
            if file_sha256(candidate) == digest:
                return candidate
    return None


def _initial_state(args: argparse.Namespace) -> dict | None:
    """The checkpoint a new run continues (network, AdamW moments, weight average), if any: --init
    CHECKPOINT, or the one the shipped weights name when it is found. Says which on stderr."""
    if args.init == "scratch" or args.fresh_optimizer:
        return None
    if args.init == "shipped":
        from ..model.weights import default_weights_path

        found = find_named_checkpoint(default_weights_path())
        if found is None:
            print("the shipped weights' checkpoint is not here (see docs/training.md, 'Continuing'): starting "
                  "a fresh AdamW, its moments filled at learning rate 0 first", file=sys.stderr)
            return None
        print(f"continuing the shipped weights' checkpoint {found} (AdamW moments and weight average)",
              file=sys.stderr)
        return load_checkpoint(found)
    return read_checkpoint(Path(args.init))


def _initial_net(args: argparse.Namespace) -> SICTrainable:
    if args.init == "scratch":
        config = TINY if args.config == "tiny" else ModelConfig()
        if args.hidden:
            config = replace(config, hidden=args.hidden)
        return SICTrainable(config)
    from ..model.weights import default_weights_path
    from .validate import load_network

    path = default_weights_path() if args.init == "shipped" else Path(args.init)
    net = load_network(path)
    if args.hidden and args.hidden != net.config.hidden:
        from .widen import widen

        narrow = net.config.hidden
        try:
            net = widen(net, args.hidden, seed=getattr(args, "seed", None) or 0)
        except ValueError as e:
            raise SystemExit(f"--hidden {args.hidden}: {e}") from None
        print(f"widened {path.name}: {narrow} -> {args.hidden} hidden channels, same function", file=sys.stderr)
    return net


def _run_options(args: argparse.Namespace, state: dict | None) -> dict:
    """The run's settings: each option given on the command line, else the checkpoint's on
    --resume (a checkpoint from before they were saved has none), else RUN_DEFAULTS. Says on
    stderr which came from the checkpoint and which options replaced the checkpoint's values."""
    saved = dict(state.get("settings") or {}) if state else {}
    options = {}
    for name in RESUMED_SETTINGS:
        given = getattr(args, name)
        options[name] = given if given is not None else saved.get(name, RUN_DEFAULTS[name])
    if state is not None:
        kept = [f"{n}={saved[n]}" for n in RESUMED_SETTINGS if n in saved and getattr(args, n) is None]
        changed = [f"{n} {saved[n]} -> {options[n]}" for n in RESUMED_SETTINGS
                   if n in saved and getattr(args, n) is not None and options[n] != saved[n]]
        if kept:
            print("resuming with the checkpoint's " + ", ".join(kept), file=sys.stderr)
        if changed:
            print("changed from the checkpoint's run: " + ", ".join(changed), file=sys.stderr)
        if not saved:
            print("this checkpoint holds no run settings: options not given take their defaults", file=sys.stderr)
    return options


def _run_folder(args: argparse.Namespace) -> Path:
    """Where the run writes: --out, else the resumed checkpoint's own folder (its checkpoint and
    log go on in place), else runs/main."""
    if args.out is not None:
        return args.out
    return args.resume.parent if args.resume else Path("runs/main")


def _cmd_run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    state = load_checkpoint(args.resume) if args.resume else None
    if state and args.hidden and args.hidden != state["config"]["hidden"]:
        raise SystemExit(f"--hidden {args.hidden} with --resume: the checkpoint's network has "
                         f"{state['config']['hidden']} hidden channels (to widen it, start a new run "
                         "with --init CHECKPOINT --hidden N)")
    opts = _run_options(args, state)
    continued = None if state else _initial_state(args)  # read once: continue_from loads its network
    if continued is not None and args.hidden and args.hidden != continued["config"]["hidden"]:
        continued = None  # widened: a new network, and nothing of the optimizer carries over
    begun = state or continued
    net = SICTrainable.for_state(ModelConfig.from_dict(begun["config"]), begun["net"]) if begun else _initial_net(args)
    if net.model.level_film is not None and not opts["level_film"]:
        if args.level_film is False:
            raise SystemExit("--no-level-film: the network this run starts from has level tables (a trained "
                             "g_s depends on them); they cannot be left out")
        print("the network has level tables: --level-film", file=sys.stderr)
        opts["level_film"] = True
    if net.model.level_film is not None and net.model.level_film.inner_scale is not None and not opts["inner_film"]:
        if args.inner_film is False:
            raise SystemExit("--no-inner-film: the network this run starts from has inner level tables (a "
                             "trained g_s depends on them); they cannot be left out")
        print("the network has inner level tables: --inner-film", file=sys.stderr)
        opts["inner_film"] = True
    if opts["inner_film"]:
        opts["level_film"] = True
    if state is None:  # a new run: the defaults that depend on how it starts
        if args.lr is None:
            opts["lr"] = LR_PER_CROP * opts["batch"]
        if args.moment_steps is None:
            fresh = continued is None or not continued.get("optimizer")
            opts["moment_steps"] = FRESH_MOMENT_STEPS if fresh and args.init != "scratch" else 0
    if args.steps == 0 and not args.minutes:
        raise SystemExit("--steps 0 (set from the measured speed) needs --minutes")
    if not opts["dists"] >= 0:
        raise SystemExit("--dists: a weight of at least 0")
    if not opts["dists_levels"] >= 0:
        raise SystemExit("--dists-levels: a level of at least 1 (0: every level)")
    if not (opts["low_mse"] >= 0 and opts["high_mse"] >= 0):
        raise SystemExit("--low-mse and --high-mse: a factor of at least 0")
    if not opts["adversarial"] >= 0 or not opts["adversarial_lr"] > 0 or not opts["adversarial_warmup"] >= 0:
        raise SystemExit("--adversarial, --adversarial-lr and --adversarial-warmup: a weight of at least 0, a "
                         "positive rate and a step count of at least 0")
    precision, warning = resolve_precision(args.precision, args.device)
    if warning:
        print(warning, file=sys.stderr)
    images = load_pack(args.pack) if args.pack else load_folder(args.data or default_train_dir(), opts["crop"])
    from .perceptual import LPIPSLoss

    settings = TrainSettings(
        steps=TrainSettings.steps if args.steps is None else args.steps,  # --resume: resume_schedule below
        batch=opts["batch"], crop=opts["crop"], lr=opts["lr"], lr_min=opts["lr_min"],
        lr_warmup=opts["lr_warmup"], schedule=opts["schedule"], weight_decay=opts["weight_decay"],
        clip=opts["clip"], seed=opts["seed"], device=args.device, precision=precision,
        channels_last=opts["channels_last"], warmup_steps=opts["warmup_steps"], moment_steps=opts["moment_steps"],
        ema=opts["ema"], level_film=bool(opts["level_film"]), level_film_lr=opts["level_film_lr"],
        inner_film=bool(opts["inner_film"]),
        adversarial_lr=opts["adversarial_lr"], adversarial_warmup=opts["adversarial_warmup"],
        discriminator=opts["discriminator"],
        checkpoint_every=args.checkpoint_every,
        checkpoint_minutes=args.checkpoint_minutes,
        minutes=args.minutes,
        loss=LossSettings(samples=opts["samples"], texture=opts["texture"], full_weight=opts["full_weight"],
                          deterministic_share=opts["deterministic_share"],
                          deterministic_from=opts["deterministic_from"], low_levels=opts["low_levels"],
                          low_mse=opts["low_mse"], high_mse=opts["high_mse"],
                          decoder_only=bool(opts["decoder_only"]), adversarial=opts["adversarial"],
                          dists=opts["dists"], dists_levels=opts["dists_levels"]),
    )
    sampler = CropSampler(images, opts["crop"], opts["batch"], seed=opts["seed"],
                          device=args.device if args.data_on_device else None)
    trainer = Trainer(net, sampler, LPIPSLoss(), settings)
    if state:
        trainer.load_state_dict(state)
        resume_schedule(settings, state, args.steps)  # the saved horizon, or a new one continuing the decay
    elif continued is not None:
        trainer.continue_from(continued)
    print(f"training {sum(p.numel() for p in net.model.parameters()) / 1e6:.2f} M parameters "
          f"on {len(images)} images from step {trainer.step} to {settings.steps or 'auto'}"
          + (f" or {args.minutes} minutes" if args.minutes else "")
          + f", {precision}" + (" + channels_last" if opts["channels_last"] else ""), file=sys.stderr)
    out = _run_folder(args)
    validator = None
    if args.validate_every:
        from .validate import Validator

        validator = Validator.from_folder(args.data or default_train_dir(), log=out / "validation.jsonl")
    end = run(trainer, out / "checkpoint.pt", out / "log.jsonl", progress=not args.no_progress,
              validator=validator, validate_every=args.validate_every)
    print(f"stopped at step {trainer.step} ({end.get('stopped')}); checkpoint {out / 'checkpoint.pt'}",
          file=sys.stderr)


def _cmd_pack(args: argparse.Namespace) -> None:
    images = load_folder(args.data or default_train_dir(), args.crop)
    if args.photos:
        quality = write_photo_pack(images, args.output, int(args.max_mb * 1e6))
        print(f"wrote {len(images)} photos (JPEG q{quality}) to {args.output} "
              f"({args.output.stat().st_size / 1e6:.1f} MB)")
        return
    n = write_pack(images, args.output, args.crop, int(args.max_mb * 1e6))
    print(f"wrote {n} crops of {args.crop}px to {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


BUNDLE_PARTS = ("photos", "weights")
"""The folders of a GPU bundle, each carried by its own device command (docs/training.md)."""


def _cmd_bundle(args: argparse.Namespace) -> None:
    """Two parts, each of which travels with the repository under the limit: ``photos/`` (the
    training photos, re-coded to fit) and ``weights/`` (the LPIPS-alex and DISTS weights the
    objective reads). Each part has a SHA256SUMS that ``scripts/gpu-burst.sh`` checks on arrival."""
    import hashlib
    import shutil
    import subprocess

    from .perceptual import METRIC_FILES, metric_weights_dir

    repo = Path(__file__).resolve().parents[2]
    try:
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
        repo_bytes = sum((repo / f).stat().st_size for f in tracked.decode().split("\0") if f and (repo / f).is_file())
    except (OSError, subprocess.CalledProcessError):
        repo_bytes = sum(f.stat().st_size for f in (repo / "sicc").rglob("*") if f.is_file())
    limit = int((args.limit_mb - args.margin_mb) * 1e6) - repo_bytes
    source = metric_weights_dir()
    missing = [name for name in METRIC_FILES if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"metric weights missing from {source}: {', '.join(missing)} (set SICC_METRIC_WEIGHTS)")
    metric_bytes = sum((source / name).stat().st_size for name in METRIC_FILES)
    if metric_bytes > limit:
        raise SystemExit(f"the metric weights ({metric_bytes / 1e6:.1f} MB) and the repository "
                         f"({repo_bytes / 1e6:.1f} MB) exceed {args.limit_mb - args.margin_mb:.1f} MB")
    images = load_folder(args.data or default_train_dir(), args.crop)
    out = args.output
    if out.exists():
        shutil.rmtree(out)
    photos, weights = (out / part for part in BUNDLE_PARTS)
    photos.mkdir(parents=True)
    for name in METRIC_FILES:
        (weights / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, weights / name)
    quality = write_photo_pack(images, photos / "photos.npz", limit)
    for part in (photos, weights):
        files = sorted(f for f in part.rglob("*") if f.is_file())
        sums = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(part).as_posix()}\n"
                       for f in files)
        (part / "SHA256SUMS").write_text(sums)
    manifest = {
        "photos": len(images), "jpeg_quality": quality, "min_side": args.crop,
        "photos_bytes": (photos / "photos.npz").stat().st_size, "metric_weights_bytes": metric_bytes,
        "repository_bytes": repo_bytes, "parts": list(BUNDLE_PARTS),
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out}/: photos/ ({len(images)} photos at JPEG q{quality}, {manifest['photos_bytes'] / 1e6:.1f} MB) "
          f"and weights/ (LPIPS-alex and DISTS, {metric_bytes / 1e6:.1f} MB); each travels with the repository "
          f"({repo_bytes / 1e6:.1f} MB) in its own command, under {args.limit_mb:.1f} MB")


def _cmd_profile(args: argparse.Namespace) -> None:
    import copy
    import os

    from .perceptual import LPIPSLoss
    from .profile import Variant, format_table, profile_variant

    if args.threads:
        torch.set_num_threads(args.threads)
    net = _initial_net(args)
    perceptual = LPIPSLoss()
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(args.batch, 3, args.crop, args.crop, generator=gen) for _ in range(args.steps)]
    rows = []
    for spec in args.variants.split(","):
        variant = Variant(spec.split("+")[0], spec.endswith("+cl"))
        rows.append(profile_variant(copy.deepcopy(net), copy.deepcopy(perceptual), batches, variant, args.device))
        print(f"{variant.name}: {rows[-1]['total_ms']:.0f} ms/step", file=sys.stderr)
    print(format_table(rows, args.batch, args.crop))
    print(f"\n{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _cmd_export(args: argparse.Namespace) -> None:
    from .export import LEGACY_FORMAT, convert_legacy, export_weights
    from .logs import compact_log, summarize_logs

    state = load_checkpoint(args.checkpoint)  # data, never code (weights_only)
    if isinstance(state, dict) and state.get("format") == LEGACY_FORMAT:
        print(f"converted {args.output} (model id {convert_legacy(args.checkpoint, args.output)})")
        return
    weights = checkpoint_weights(state, args.checkpoint, args.ema)
    net = SICTrainable.for_state(ModelConfig.from_dict(state["config"]), weights)
    net.load_state_dict(weights)
    summary = summarize_logs(args.log) if args.log else {}
    if summary.get("runs") and state.get("settings"):
        summary["runs"][-1]["settings"] = dict(state["settings"])  # the last log is this checkpoint's run
    hardware = args.hardware or state.get("hardware")
    if summary.get("runs") and hardware:
        summary["runs"][-1]["hardware"] = list(hardware)
    summary["step"] = int(state["step"])
    checkpoint_record = {"sha256": file_sha256(args.checkpoint), "file": args.checkpoint.name, "step": int(state["step"]),
                         "weights": "ema" if args.ema else "last"}
    earlier_rows: list[dict] = []
    if args.continues:
        from ..model.weights import load_weights

        earlier = load_weights(args.continues).training
        new_steps = sum(r["last_step"] - r["first_step"] + 1 for r in summary.get("runs", []))
        summary = {"runs": earlier.get("runs", []) + summary.get("runs", []),
                   "step": int(earlier.get("step", 0)) + (new_steps or int(state["step"]))}
        earlier_log = Path(args.continues).with_name("training-log.jsonl")
        if earlier_log.is_file():
            earlier_rows = [json.loads(line) for line in earlier_log.read_text().splitlines() if line.strip()]
    summary["checkpoint"] = checkpoint_record  # the checkpoint a next run continues (find_named_checkpoint)
    model_id = export_weights(net, args.output, summary)
    print(f"exported {args.output} (model id {model_id}, {summary['step']} training steps in all)")
    if args.log:
        log_out = args.output.with_name("training-log.jsonl")
        offset = earlier_rows[-1]["step"] if earlier_rows else 0
        rows = earlier_rows + [{**r, "step": r["step"] + offset} for r in compact_log(args.log, continuous=True)]
        tmp = log_out.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(log_out)
        print(f"wrote {log_out} ({len(rows)} rows, 50-step means)")


def _int_list(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(t) for t in text.split(",")]


def _cmd_validate(args: argparse.Namespace) -> None:
    import os

    from .validate import Validator, format_comparison, load_network

    if args.threads:
        torch.set_num_threads(args.threads)
    validator = Validator.from_folder(args.data or default_train_dir(), levels=_int_list(args.levels),
                                      spreads=[float(s) for s in args.spreads.split(",")])
    scores = []
    for path in args.models:
        scores.append(validator.score(load_network(path, ema=args.ema and path.suffix == ".pt")))
        print(f"scored {path}", file=sys.stderr)
    names = [str(p) for p in args.models]
    print(format_comparison(names, scores))
    print(f"\nload average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({n: s.summary() for n, s in zip(names, scores)}, indent=1) + "\n")


def _cmd_spreads(args: argparse.Namespace) -> None:
    import os

    from .validate import format_spread_scores, runtime_spread_scores

    if args.threads:
        torch.set_num_threads(args.threads)
    result = runtime_spread_scores(args.weights, args.data or default_train_dir(), levels=_int_list(args.levels),
                                   spreads=[float(s) for s in args.spreads.split(",")], threads=args.threads)
    print(format_spread_scores(result))
    print(f"\nload average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in result.items()}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = _build_parser().parse_args(argv)
    {"run": _cmd_run, "pack": _cmd_pack, "bundle": _cmd_bundle, "profile": _cmd_profile,
     "export": _cmd_export, "validate": _cmd_validate,
     "spreads": _cmd_spreads}[args.command](args)


if __name__ == "__main__":
    main()
