"""``python -m sicc.bench``: run the benchmark; ``python -m sicc.bench readme``: refresh README tables.

    python -m sicc.bench [run]           # full run: 24 Kodak images, writes bench/results.json + bench/rd.png
    python -m sicc.bench [run] --quick   # 2 images, short sweeps, light speed part
    python -m sicc.bench readme          # regenerate README.md's bench section from bench/results.json
    python -m sicc.bench plot            # redraw bench/rd.png from bench/results.json
    python -m sicc.bench compare         # shipping verdict of bench/results.json against bench/previous.json
    python -m sicc.bench tools           # are cjxl/djxl/avifenc/avifdec installed for the speed table?

``run`` is also the default command, so its options work without it.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from .progressive import load_codec
from .runner import REPO_ROOT, BenchConfig, default_out_dir, read_results, run_bench, write_results


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'3840x2160,16384x16384' -> ((3840, 2160), (16384, 16384))."""
    try:
        return tuple(tuple(int(v) for v in part.lower().split("x", 1)) for part in text.split(",") if part)
    except ValueError:
        raise click.BadParameter(f"expected WxH[,WxH...], got {text!r}") from None


_RUN_OPTIONS = [
    click.option("--quick", is_flag=True, help="2 images, short codec sweeps, light synonymy/speed parts."),
    click.option("--images", "n_images", type=int, default=None, help="Use the first N images (default: all 24)."),
    click.option("--images-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Evaluation PNGs (default: shared/data/kodak)."),
    click.option("--levels", default=None, help="Comma-separated sicc levels to evaluate (default: all)."),
    click.option("--crop", type=int, default=None, help="Centre-crop every image to CROP x CROP (tests)."),
    click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
                 help="Output folder for results.json and rd.png (default: bench/ at the repo root)."),
    click.option("--weights", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
                 help="Model weights file (default: the shipped model)."),
    click.option("--device", default="auto", show_default=True, help="Where the metrics run: cpu, cuda or auto."),
    click.option("--threads", type=int, default=None, help="torch threads (default: torch's own choice)."),
    click.option("--codecs", default="jpeg,webp,avif,jxl", show_default=True, help="Baselines to run."),
    click.option("--spread", type=float, default=2.0, show_default=True, help="Spread of the sampled decode."),
    click.option("--synonymy-images", type=int, default=4, show_default=True,
                 help="Images used for the diversity and idempotence measurements (0: skip)."),
    click.option("--idempotence-levels", default="4,8,16", show_default=True,
                 help="Levels at which decode -> re-encode is repeated."),
    click.option("--generations", type=int, default=5, show_default=True, help="Idempotence generations."),
    click.option("--skip-speed", is_flag=True, help="Skip speed and memory measurements."),
    click.option("--skip-memory", is_flag=True, help="Skip the large-frame peak-memory measurement."),
    click.option("--speed-images", type=int, default=3, show_default=True),
    click.option("--speed-repeats", type=int, default=3, show_default=True),
    click.option("--memory-sizes", type=_sizes, default="3840x2160,16384x16384", show_default=True,
                 help="Frame sizes for the peak-memory measurement."),
    click.option("--fresh-baselines", is_flag=True,
                 help="Measure every baseline again instead of reusing cached rows."),
    click.option("--baseline-cache", type=click.Path(path_type=Path, dir_okay=False), default=None,
                 help="Baseline cache file (default: $SICC_BENCH_CACHE or ~/.cache/sicc/bench-baselines.json)."),
    click.option("--no-progress", is_flag=True, help="No progress bar: one line per image on stderr instead."),
]


def run_options(command):
    """The benchmark options, shared by the group (default command) and ``run``."""
    for option in reversed(_RUN_OPTIONS):
        command = option(command)
    return command


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@run_options
@click.pass_context
def main(ctx: click.Context, **options) -> None:
    """Benchmark sicc on Kodak against JPEG, WebP, AVIF and JPEG XL (default command: run)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run, **options)


@main.command()
@run_options
def run(quick: bool, n_images: int | None, images_dir: Path | None, levels: str | None, crop: int | None,
        out_dir: Path | None, weights: Path | None, device: str, threads: int | None, codecs: str, spread: float,
        synonymy_images: int, idempotence_levels: str, generations: int, skip_speed: bool, skip_memory: bool,
        speed_images: int, speed_repeats: int, memory_sizes: tuple[tuple[int, int], ...], fresh_baselines: bool,
        baseline_cache: Path | None, no_progress: bool) -> None:
    """Run the benchmark: results.json and rd.png in --out."""
    import torch

    config = BenchConfig(
        images=n_images, crop=crop, weights=weights, levels=_ints(levels) if levels else None,
        device=("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device,
        threads=threads, spread=spread, codecs=tuple(c.strip() for c in codecs.split(",") if c.strip()),
        synonymy_images=synonymy_images, idempotence_levels=_ints(idempotence_levels), generations=generations,
        skip_speed=skip_speed, skip_memory=skip_memory, speed_images=speed_images, speed_repeats=speed_repeats,
        memory_sizes=memory_sizes, progress=not no_progress, reuse_baselines=not fresh_baselines,
        baseline_cache=baseline_cache,
    )
    if images_dir is not None:
        config.images_dir = images_dir
    if quick:
        config.apply_quick()
    out_dir = out_dir or default_out_dir()
    try:
        load_codec(config.weights)  # fail early and in one line when there is no model
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot load sicc model {config.weights or '(shipped)'}: {exc}") from exc
    results = run_bench(config, command="python -m sicc.bench " + shlex.join(sys.argv[1:]))
    json_path = write_results(results, out_dir / "results.json")
    from .plots import plot_rd

    figure = plot_rd(read_results(json_path), out_dir / "rd.png")
    click.echo(f"wrote {json_path} and {figure} in {results['duration_s']:.0f} s")


@main.command()
@click.option("--results", "results_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="results.json to update (default: bench/results.json).")
@click.option("--memory", is_flag=True, help="Measure the peak-memory part again too.")
def speed(results_path: Path | None, memory: bool) -> None:
    """Measure the speed part of a results.json again, in place (e.g. after installing cjxl/avifenc)."""
    from .runner import rerun_speed

    results_path = results_path or default_out_dir() / "results.json"
    results = rerun_speed(read_results(results_path), "python -m sicc.bench speed " + shlex.join(sys.argv[2:]),
                          memory=memory)
    write_results(results, results_path)
    click.echo(f"updated the speed part of {results_path}")


@main.command()
def tools() -> None:
    """Whether the external codec tools of the speed table's end-to-end rows are installed.

    Prints each tool with its path. Exit status 0: all installed; 1: some missing (the benchmark still
    runs, but its speed table then lacks their rows). A check that costs nothing, before a long run.
    """
    from .speed import baseline_tools

    found = baseline_tools()
    for name, path in found.items():
        click.echo(f"{name:8} {path or 'not installed'}")
    missing = [name for name, path in found.items() if path is None]
    if missing:
        click.echo(f"missing: {' '.join(missing)} (Debian/Ubuntu: apt-get install libjxl-tools libavif-bin)", err=True)
        sys.exit(1)


@main.command()
@click.option("--weights", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Model weights file to score (default: the shipped model).")
@click.option("--images", "n_images", type=int, default=None, help="Use the first N Kodak images (default: all 24).")
@click.option("--levels", default=None, help="Comma-separated levels (default: all).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("runs/score"),
              show_default=True, help="Where results.json goes (never bench/).")
@click.option("--threads", type=int, default=None, help="torch threads for the metrics.")
@click.option("--sampled", is_flag=True, help="Also score the sampled decode (spread 2, seed 0), which the "
                                              "shipping rule guards; doubles the decodes.")
@click.option("--no-progress", is_flag=True, help="No progress bar: one line per image on stderr instead.")
def score(weights: Path | None, n_images: int | None, levels: str | None, out_dir: Path, threads: int | None,
          sampled: bool, no_progress: bool) -> None:
    """Score a model in minutes: deterministic decodes of real files on Kodak, baselines from the cache.

    Prints DISTS, LPIPS and PSNR at 0.1-0.5 bpp beside JPEG, AVIF and the model of bench/results.json.
    """
    config = BenchConfig(images=n_images, weights=weights, levels=_ints(levels) if levels else None,
                         threads=threads, modes=("det", "sampled") if sampled else ("det",), synonymy_images=0,
                         skip_speed=True, skip_memory=True, progress=not no_progress)
    results = run_bench(config, command="python -m sicc.bench score " + shlex.join(sys.argv[2:]))
    json_path = write_results(results, out_dir / "results.json")
    reference_path = default_out_dir() / "results.json"
    reference = read_results(reference_path) if reference_path.is_file() else None
    click.echo(score_table(results, reference))
    cache = results.get("baselines_cache", {})
    click.echo(f"\nwrote {json_path} in {results['duration_s']:.0f} s "
               f"(baseline rows reused {cache.get('reused_rows', 0)}, measured {cache.get('measured_rows', 0)})")


@main.command()
@click.option("--results", "results_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Results of the candidate (default: bench/results.json).")
@click.option("--previous", "previous_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Results of the model it would replace (default: bench/previous.json).")
def compare(results_path: Path | None, previous_path: Path | None) -> None:
    """The shipping verdict of one benchmark or score run against another.

    Prints the matched-rate tables, the change at each rate (± jackknife SE) and the verdict of
    the shipping rule. Exit status 0: ships; 1: does not ship (or unreadable input).
    """
    results_path = results_path or default_out_dir() / "results.json"
    previous_path = previous_path or default_out_dir() / "previous.json"
    try:
        results, previous = read_results(results_path), read_results(previous_path)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    from .report import ship_guards, shipping_verdict

    changes = model_changes(results, previous)
    click.echo(score_table(results, previous, str(previous_path), changes=changes))
    if not shipping_verdict(changes, ship_guards(results, previous, changes))[0]:
        sys.exit(1)


def model_changes(results: dict, reference: dict) -> list[dict]:
    """The change of the deterministic decode's DISTS, LPIPS and PSNR from ``reference`` to ``results``
    at each target rate, on the images both measured (curves.matched_change)."""
    from . import curves
    from .report import SHIP_METRICS, det_rows

    new_rows = det_rows(results)
    ref_rows = det_rows(reference, {r["image"] for r in new_rows})
    return curves.matched_change(new_rows, ref_rows, curves.TARGET_BPPS, (*SHIP_METRICS, "psnr"))


def score_table(results: dict, reference: dict | None, reference_name: str = "bench/results.json",
                changes: list[dict] | None = None) -> str:
    """Matched-rate table of a score run, beside JPEG, AVIF and the committed results' model; with a
    reference, the change against it (± jackknife SE) and the shipping rule's verdict.

    ``changes``: model_changes(results, reference) when the caller has it already (it is computed
    here otherwise)."""
    from . import curves
    from .report import (GUARD_RULE, SHIP_METRICS, SHIP_RULE, det_rows, fmt_change, guard_table, ship_guards,
                         shipping_verdict)

    targets = curves.TARGET_BPPS
    at = results["matched"]["at_targets"]
    rows = [("sicc (det), model " + str(results["model"]["id"]), at["sicc_det"])]
    if reference is None:
        changes = None
    else:
        ref_rows = det_rows(reference, {r["image"] for r in det_rows(results)})
        ref_curve = curves.group_mean(ref_rows, "level")
        rows.append((f"sicc (det), model {reference['model']['id']} ({reference_name}, same images)",
                     curves.matched(ref_curve, targets)))
        if changes is None:
            changes = model_changes(results, reference)
    for name in ("jpeg", "avif"):
        if name in at:
            rows.append((results["matched"]["labels"][name], at[name]))
    lines = []
    for metric in ("dists", "lpips", "psnr"):
        lines.append(f"| {metric} | " + " | ".join(f"{t} bpp" for t in targets) + " |")
        lines.append("|---" * (len(targets) + 1) + "|")
        for label, points in rows:
            digits = 2 if metric == "psnr" else 3
            cells = ("–" if p[metric] is None else f"{p[metric]:.{digits}f}" for p in points)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if changes is not None:
        lines.append(f"Change against {reference['model']['id']} (± jackknife standard error over "
                     f"{changes[0]['images']} images):")
        lines.append("")
        lines.append("| change | " + " | ".join(f"{t} bpp" for t in targets) + " |")
        lines.append("|---" * (len(targets) + 1) + "|")
        for metric in (*SHIP_METRICS, "psnr"):
            lines.append(f"| {metric} | " + " | ".join(fmt_change(p[metric]) for p in changes) + " |")
        guards = ship_guards(results, reference, changes)
        ok, why = shipping_verdict(changes, guards)
        lines += ["", guard_table(guards), "", SHIP_RULE, GUARD_RULE,
                  f"Verdict: {'ships' if ok else 'does not ship'}: {why}.", ""]
    return "\n".join(lines)


@main.command()
@click.option("--results", "results_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="results.json (default: bench/results.json).")
@click.option("--readme", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="README to update (default: README.md at the repo root).")
@click.option("--previous", "previous_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Results of the previously shipped model, compared at matched bpp "
                                 "(default: bench/previous.json when present).")
def readme(results_path: Path | None, readme: Path | None, previous_path: Path | None) -> None:
    """Regenerate README.md's section between <!-- bench:start --> and <!-- bench:end -->."""
    from .report import update_readme

    results_path = results_path or default_out_dir() / "results.json"
    readme = readme or REPO_ROOT / "README.md"
    if previous_path is None and (default_out_dir() / "previous.json").is_file():
        previous_path = default_out_dir() / "previous.json"
    try:
        results = read_results(results_path)
        previous = read_results(previous_path) if previous_path else None
        update_readme(readme, results, results_path, previous)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"updated {readme} from {results_path}")
    card = REPO_ROOT / "sicc" / "weights" / "MODEL_CARD.md"
    if results["model"]["id"] == _shipped_model_id():
        from .report import update_model_card
        from ..model.weights import load_weights

        update_model_card(card, results, load_weights().training)
        click.echo(f"updated {card}")
    else:
        click.echo(f"{card} left alone: the results are not for the shipped model")


def _shipped_model_id() -> str | None:
    from ..model.weights import default_weights_path, load_weights

    return load_weights().model_id.hex() if default_weights_path().is_file() else None


@main.command()
@click.option("--results", "results_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="results.json (default: bench/results.json).")
def plot(results_path: Path | None) -> None:
    """Redraw rd.png next to results.json."""
    from .plots import plot_rd

    results_path = results_path or default_out_dir() / "results.json"
    click.echo(f"wrote {plot_rd(read_results(results_path), results_path.with_name('rd.png'))}")


if __name__ == "__main__":
    main()
