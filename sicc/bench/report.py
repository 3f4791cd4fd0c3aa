"""README tables generated from results.json, so no benchmark number is ever typed by hand.

``update_readme`` replaces what lies between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` in README.md with ``render(results)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import curves
from .metrics import LOWER_IS_BETTER

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
REFERENCE_CURVES = {"ms_illm"}
ROW_ORDER = ("sicc_det", "sicc_sampled", "jpeg", "webp", "avif", "jxl", "ms_illm")
DIGITS = {"psnr": 2, "ms_ssim": 4, "lpips": 3, "dists": 3, "bpp": 3, "mean_pairwise_lpips": 3}
TITLES = {"dists": "DISTS ↓", "lpips": "LPIPS-alex ↓", "psnr": "PSNR (dB) ↑", "ms_ssim": "MS-SSIM ↑"}


def fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_seconds(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def matched_table(results: dict, metric: str) -> str:
    """Codecs x target bpps for one metric; the best measured value of each column in bold."""
    matched = results["matched"]
    targets = matched["targets"]
    names = [n for n in ROW_ORDER if n in matched["at_targets"]]
    values = {n: [row[metric] for row in matched["at_targets"][n]] for n in names}
    best = []
    for j in range(len(targets)):
        column = [values[n][j] for n in names if n not in REFERENCE_CURVES and values[n][j] is not None]
        best.append((min if LOWER_IS_BETTER[metric] else max)(column) if column else None)
    rows = []
    for n in names:
        cells = []
        for j, v in enumerate(values[n]):
            text = fmt(v, DIGITS[metric])
            cells.append(f"**{text}**" if v is not None and v == best[j] and n not in REFERENCE_CURVES else text)
        rows.append([matched["labels"].get(n, n), *cells])
    return table([TITLES[metric], *[f"{t:g} bpp" for t in targets]], rows)


def levels_table(results: dict) -> str:
    """sicc per level: real rate, deterministic and sampled quality, sample diversity."""
    det = results["sicc"]["levels"]["det"]
    sampled = {p["level"]: p for p in results["sicc"]["levels"].get("sampled", [])}
    diversity = {p["level"]: p["mean_pairwise_lpips"] for p in results["synonymy"]["diversity"]["levels"]}
    header = ["Level", "bytes", "bpp", "est. bpp", "overhead %", "PSNR det", "PSNR smp", "MS-SSIM det", "LPIPS det", "LPIPS smp",
              "DISTS det", "DISTS smp", "diversity"]
    rows = []
    for p in det:
        s = sampled.get(p["level"], {})
        rows.append([
            str(p["level"]), f"{p['bytes']:.0f}", fmt(p["bpp"], 3), fmt(p.get("est_bpp"), 3),
            fmt(p.get("overhead_pct"), 2),
            fmt(p["psnr"], 2), fmt(s.get("psnr"), 2), fmt(p["ms_ssim"], 4),
            fmt(p["lpips"], 3), fmt(s.get("lpips"), 3), fmt(p["dists"], 3), fmt(s.get("dists"), 3),
            fmt(diversity.get(p["level"]), 3),
        ])
    return table(header, rows)


def idempotence_table(results: dict) -> str:
    """DISTS against the original after g decode/re-encode generations."""
    idem = results["synonymy"]["idempotence"]
    generations = list(range(idem["generations"] + 1))
    rows = []
    for mode in ("det", "sampled"):
        by_level: dict = {}
        for p in idem.get(mode, []):
            by_level.setdefault(p["level"], {})[p["generation"]] = p
        for level, gens in sorted(by_level.items()):
            cells = [f"{fmt(gens[g]['dists'], 3)} / {fmt(gens[g]['psnr'], 1)}" if g in gens else "–"
                     for g in generations]
            rows.append([mode, str(level), *cells])
    return table(["decode", "level", *[f"gen {g}" for g in generations]], rows)


def speed_table(results: dict) -> str:
    speed = results.get("speed", {})
    if speed.get("skipped"):
        return "_Speed not measured in this run._"
    rows = []

    def add(label: str, part: dict | None, note: str = "") -> None:
        if not part:
            return
        if not part.get("available", True):
            rows.append([label, "–", "–", f"unavailable: {part.get('reason', '')}"])
        else:
            rows.append([label, fmt_seconds(part.get("encode_s")), fmt_seconds(part.get("decode_s")), note])

    inproc = speed.get("sicc_inprocess", {})
    extra = inproc.get("extra_sample_s")
    add("sicc (library, model loaded)", inproc,
        f"sampled decode at level {inproc.get('sampled_level')}: {fmt_seconds(inproc.get('decode_sampled_s'))} s, "
        f"+{fmt_seconds(extra)} s per extra sample"
        if extra is not None else "")
    cli = speed.get("sicc_cli", {})
    add("`sicc encode` / `sicc decode` (process)", cli,
        f"startup {fmt_seconds(cli.get('startup_s'))} s" if cli.get("startup_s") is not None else "")
    lib, cmd = speed.get("baseline_library", {}), speed.get("baseline_commands", {})
    settings = speed.get("settings", {})
    add("JPEG XL (imagecodecs)", lib.get("jxl"), _settings_note(settings.get("jxl")))
    add("`cjxl` / `djxl` (process)", cmd.get("jxl"), cmd.get("jxl", {}).get("version", ""))
    add("AVIF (Pillow)", lib.get("avif"), _settings_note(settings.get("avif")))
    add("`avifenc` / `avifdec` (process)", cmd.get("avif"), cmd.get("avif", {}).get("version", ""))
    return table(["codec", "encode s", "decode s", "notes"], rows)


def speed_summary(results: dict) -> str:
    """How the sicc commands compare with djxl / cjxl end to end, and how busy the machine was."""
    speed = results.get("speed", {})
    cli, jxl = speed.get("sicc_cli", {}), speed.get("baseline_commands", {}).get("jxl", {})
    load = ", ".join(f"{x:.1f}" for x in speed.get("load_average_before", []))
    parts = []
    if cli.get("available", True) and jxl.get("available") and cli.get("decode_s") and jxl.get("decode_s"):
        parts.append(f"End to end (a new process per image, output written), `sicc decode` takes "
                     f"{cli['decode_s'] / jxl['decode_s']:.1f}x the time of `djxl` and `sicc encode` "
                     f"{cli['encode_s'] / jxl['encode_s']:.1f}x that of `cjxl`.")
    if load:
        settled = speed.get("settle_s")
        waited = f" (after waiting {settled:.0f} s for the metric phase's load to decay)" if settled else ""
        parts.append(f"Load average {load} before the speed part{waited}.")
    return " ".join(parts)


def batch_text(results: dict) -> str:
    """One folder encoded as a batch against one process per image (sicc/bench/batchspeed.py)."""
    batch = results.get("speed", {}).get("sicc_batch")
    if not batch:
        return "_Batch encoding not measured in this run._"
    if not batch.get("available", True):
        return f"_Batch encoding unavailable: {batch.get('reason', '')}._"
    n, jobs = batch["images"], batch["jobs"]
    rows = [[f"`sicc encode DIR -o OUT -j {j}` (one process)", fmt_seconds(s), fmt_seconds(s / n)]
            for j, s in sorted(batch["batch_s"].items(), key=lambda kv: int(kv[0]))]
    if batch.get("processes_s") is not None:
        k = batch["processes"]
        rows.append([f"{k} `sicc encode PART -o OUT --threads 1` processes at once (a part of the folder each)",
                     fmt_seconds(batch["processes_s"]), fmt_seconds(batch["processes_s"] / n)])
    rows.append([f"{n} separate `sicc encode` processes", fmt_seconds(batch["separate_s"]),
                 fmt_seconds(batch["separate_s"] / n)])
    same = "identical" if batch.get("identical_outputs") else "NOT identical"
    load = ", ".join(f"{x:.1f}" for x in batch.get("load_average_before", []))
    return (f"Encoding a folder of {n} Kodak images (wall seconds, processes included; load average {load} "
            f"before): one batch command with `-j {jobs}` is {batch['speedup']:.2f}x faster than {n} separate "
            f"commands; the files are {same}.\n\n" + table(["command", "total s", "s per image"], rows))


def _settings_note(settings: dict | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (settings or {}).items())


MEMORY_LABELS = {
    "sicc_load_only": "sicc: import + model load only",
    "sicc_encode": "sicc encode (library, fresh process)",
    "sicc_decode": "sicc decode (library, fresh process)",
    "jxl_decode_library": "JPEG XL decode (imagecodecs)",
    "jxl_decode_djxl": "JPEG XL decode (`djxl`)",
    "avif_decode_library": "AVIF decode (Pillow)",
    "avif_decode_avifdec": "AVIF decode (`avifdec`)",
}


def _memory_runs(results: dict) -> list[dict]:
    """The measured frames (results of older runs hold one dict instead of a list)."""
    memory = results.get("speed", {}).get("memory")
    runs = memory if isinstance(memory, list) else [memory] if memory else []
    return [run for run in runs if run and "size" in run and run.get("available", True)]


def memory_table(results: dict) -> str:
    frames = _memory_runs(results)
    if not frames:
        return "_Peak memory not measured in this run._"
    header = ["peak RSS MiB (seconds)"] + [f"{f['size'][0]}x{f['size'][1]}" for f in frames]
    rows = []
    for key, label in MEMORY_LABELS.items():
        cells = []
        for frame in frames:
            run = frame.get(key)
            if not run:
                cells.append("–")
            elif not run.get("ok"):
                cells.append("failed")
            else:
                cells.append(f"{run['max_rss_mib']:.0f} ({fmt_seconds(run.get('seconds'))})")
        if any(cell != "–" for cell in cells):
            rows.append([label] + cells)
    return table(header, rows)


def mode_rows(results: dict, mode: str, images: set[str] | None = None) -> list[dict]:
    """sicc's per-image, per-level rows of one decode mode ("det" or "sampled") of a results dict
    (over ``images`` only, if given)."""
    return [r for r in results["per_image"]["sicc"]
            if r["mode"] == mode and (images is None or r["image"] in images)]


def det_rows(results: dict, images: set[str] | None = None) -> list[dict]:
    """sicc's deterministic per-image, per-level rows of a results dict (over ``images`` only, if given)."""
    return mode_rows(results, "det", images)


SHIP_METRICS = ("dists", "lpips")
SHIP_RULE = (
    "A candidate ships when, against the shipped model at 0.1, 0.2, 0.3 and 0.5 bpp (deterministic "
    "decode, the same images), none of its DISTS and LPIPS figures is worse by more than one jackknife "
    "standard error and at least one is better by more than two."
)


def fmt_change(change: dict, digits: int = 4) -> str:
    """'-0.0050 ± 0.0015' from a {"change", "se"} pair of :func:`curves.matched_change`."""
    if change["change"] is None:
        return "–"
    se = "" if change["se"] is None else f" ± {change['se']:.{digits}f}"
    return f"{change['change']:+.{digits}f}{se}"


def ship_verdict(changes: list[dict], metrics: tuple[str, ...] = SHIP_METRICS) -> tuple[bool, str]:
    """:data:`SHIP_RULE` applied to :func:`curves.matched_change` output (lower is better)."""
    worse, better, unmeasured = [], [], []
    for point in changes:
        for metric in metrics:
            c, se = point[metric]["change"], point[metric]["se"]
            where = f"{metric.upper()} at {point['bpp']:g} bpp"
            if c is None or se is None:
                unmeasured.append(where)
            elif c > se:
                worse.append(f"{where} ({fmt_change(point[metric])})")
            elif c < -2 * se:
                better.append(where)
    if unmeasured:
        return False, "not measured at every rate: " + ", ".join(unmeasured)
    if worse:
        return False, "worse by more than one standard error: " + ", ".join(worse)
    if not better:
        return False, "no figure better by more than two standard errors"
    return True, "better by more than two standard errors: " + ", ".join(better) + "; nothing worse beyond noise"


GUARD_BPPS = (0.75, 1.0, 1.2)  # Kodak: levels 9-16 span 0.62-1.24 bpp (mean over images)
GUARD_RULE = (
    "Nor may it lose beyond noise (worse by more than two jackknife standard errors) the deterministic "
    "decode's PSNR at those rates, the sampled decode's DISTS and LPIPS at those rates, or the "
    "deterministic decode's DISTS, LPIPS and PSNR at 0.75, 1 and 1.2 bpp (levels 9-16): weight moved to the "
    "low levels must not buy them with the sampled decode or the high end."
)
def ship_guards(results: dict, previous: dict, changes: list[dict]) -> list[dict]:
    """The figures :data:`GUARD_RULE` watches, as {"what", "metrics", "changes"} (``changes``:
    matched_change output, or None where either benchmark did not measure that decode).

    ``changes``: the deterministic decode's changes at the target rates, with PSNR
    (``sicc.bench.__main__.model_changes``), whose PSNR is the first guard."""
    from . import curves

    images = {r["image"] for r in det_rows(results)}
    guards = [{"what": "deterministic PSNR", "metrics": ("psnr",), "changes": changes}]
    for what, mode, targets, metrics in (
            ("sampled decode", "sampled", curves.TARGET_BPPS, SHIP_METRICS),
            ("high rates (levels 9-16)", "det", GUARD_BPPS, (*SHIP_METRICS, "psnr"))):
        now, before = mode_rows(results, mode, images), mode_rows(previous, mode, images)
        changes = curves.matched_change(now, before, targets, metrics) if now and before else None
        guards.append({"what": what, "metrics": metrics, "changes": changes})
    return guards


def guard_verdict(guards: list[dict]) -> tuple[bool, str]:
    """:data:`GUARD_RULE` applied to :func:`ship_guards` output."""
    lost, unmeasured = [], []
    for guard in guards:
        if guard["changes"] is None:
            unmeasured.append(guard["what"])
            continue
        for point in guard["changes"]:
            for metric in guard["metrics"]:
                c, se = point[metric]["change"], point[metric]["se"]
                where = f"{guard['what']}: {metric.upper()} at {point['bpp']:g} bpp"
                if c is None or se is None:
                    unmeasured.append(where)
                elif (c if LOWER_IS_BETTER[metric] else -c) > 2 * se:
                    lost.append(f"{where} ({fmt_change(point[metric])})")
    if unmeasured:
        return False, "not measured: " + ", ".join(unmeasured) + " (the full benchmark measures them)"
    if lost:
        return False, "lost beyond noise: " + ", ".join(lost)
    return True, "no guarded figure lost beyond noise"


def shipping_verdict(changes: list[dict], guards: list[dict]) -> tuple[bool, str]:
    """The whole shipping rule: :data:`SHIP_RULE` and then :data:`GUARD_RULE`."""
    ok, why = ship_verdict(changes)
    if not ok:
        return ok, why
    guarded, why_guard = guard_verdict(guards)
    return guarded, f"{why}; {why_guard}" if guarded else why_guard


def guard_table(guards: list[dict]) -> str:
    """The guarded figures' changes (± jackknife SE), one row per decode, metric and rate set."""
    lines = ["| guarded figure | change ± SE at each rate |", "|---|---|"]
    for guard in guards:
        if guard["changes"] is None:
            lines.append(f"| {guard['what']} | not measured |")
            continue
        for metric in guard["metrics"]:
            cells = ", ".join(f"{p['bpp']:g} bpp {fmt_change(p[metric], 2 if metric == 'psnr' else 4)}"
                              for p in guard["changes"])
            lines.append(f"| {guard['what']}: {metric.upper()} | {cells} |")
    return "\n".join(lines)


def previous_model_table(results: dict, previous: dict) -> str:
    """The current model against the previously shipped one, at matched bpp, on the images both
    benchmarks measured: the evidence for shipping new weights."""
    images = set(results["settings"]["image_names"]) & set(previous["settings"]["image_names"])
    if not images:
        return "_No image in common with the previous model's benchmark._"
    now_rows, before_rows = det_rows(results, images), det_rows(previous, images)
    now, before = curves.group_mean(now_rows, "level"), curves.group_mean(before_rows, "level")
    metrics = ("dists", "lpips", "psnr")
    changes = curves.matched_change(now_rows, before_rows, curves.TARGET_BPPS, SHIP_METRICS)
    header = (["bpp"] + [f"{TITLES[m]} {who}" for m in metrics for who in ("previous", "now")]
              + [f"{TITLES[m].split()[0]} change ± SE" for m in SHIP_METRICS])
    rows = []
    for target, change in zip(curves.TARGET_BPPS, changes):
        cells = [f"{target:g}"]
        for metric in metrics:
            for curve in (before, now):
                cells.append(fmt(curves.interpolate(curve, metric, target), DIGITS[metric]))
        cells += [fmt_change(change[m]) for m in SHIP_METRICS]
        rows.append(cells)
    return (f"Against the previously shipped model `{previous['model']['id']}` (deterministic decode, the same "
            f"{len(images)} images, from `bench/previous.json`; SE: jackknife standard error over the images):"
            "\n\n" + table(header, rows))


def render(results: dict, figure: str | None = None, source: str = "bench/results.json",
           previous: dict | None = None) -> str:
    """The whole generated README section (without the markers)."""
    settings, machine, model = results["settings"], results["machine"], results["model"]
    n = len(settings["image_names"])
    crop = f", centre crops {settings['crop']}px" if settings.get("crop") else ""
    load = ", ".join(f"{x:.1f}" for x in machine.get("load_average", []))
    parts = [
        f"_Generated by `python -m sicc.bench readme` from `{source}` ({results['date']}); "
        f"command `{results['command']}`._",
        "",
        f"Kodak, {n} images{crop}. sicc model `{model['id']}`; deterministic decode (spread 0) and one sampled "
        f"decode (spread {results['sicc']['modes'].get('sampled', {}).get('spread')}, seed "
        f"{results['sicc']['modes'].get('sampled', {}).get('seed')}). Rates are real file sizes "
        "(sicc: `sicc.truncate` prefixes of one file).",
        f"Machine: {machine.get('cpu')}, {machine.get('cpus_usable')} cores, torch {machine.get('torch')} "
        f"(threads: {machine.get('torch_threads')}), load average {load} at start.",
        "",
    ]
    if figure:
        parts += [f"![rate-distortion curves]({figure})", ""]
    parts += [f"Metrics at matched rate. {results['matched']['method']} "
              "MS-ILLM: published figures (NeuralCompression results.csv), not measured here.", ""]
    missing = [f"{b['label']} ({b.get('reason', 'unavailable')})"
               for b in results["baselines"].values() if not b["available"]]
    if missing:
        parts += [f"Not run on this machine: {'; '.join(missing)}.", ""]
    for metric in ("dists", "lpips", "psnr"):
        parts += [matched_table(results, metric), ""]
    if previous is not None and previous["model"]["id"] != results["model"]["id"]:
        parts += [previous_model_table(results, previous), ""]
    parts += ["Per level (sicc, image-set mean; diversity = mean pairwise LPIPS between 4 samples):", "",
              levels_table(results), ""]
    idem = results["synonymy"]["idempotence"]
    if idem.get("det") or idem.get("sampled"):
        parts += [f"Idempotence (DISTS / PSNR against the original after g decode → re-encode generations, "
                  f"{len(results['synonymy']['images'])} images):", "", idempotence_table(results), ""]
    parts += ["Speed (seconds per image, median):", "", speed_table(results), ""]
    summary = speed_summary(results)
    if summary:
        parts += [summary, ""]
    parts += [memory_table(results), "", batch_text(results)]
    return "\n".join(parts).rstrip() + "\n"


def update_readme(readme: Path, results: dict, results_path: Path | None = None,
                  previous: dict | None = None) -> Path:
    """Replace the marked section of ``readme``; the markers must already be there."""
    readme = Path(readme)
    text = readme.read_text()
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise ValueError(f"{readme} has no '{START}' ... '{END}' section; add the two markers where the "
                         "benchmark tables belong")
    figure, source = None, "results.json"
    if results_path is not None:
        source = _relative(Path(results_path), readme)
        png = Path(results_path).with_name("rd.png")
        if png.is_file():
            figure = _relative(png, readme)
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{render(results, figure, source, previous)}{END}{tail}")
    return readme


def _replace_section(text: str, name: str, body: str) -> str:
    start, end = f"<!-- card:{name}:start -->", f"<!-- card:{name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"model card has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.rstrip()}\n{end}{tail}"


def _hardware(run: dict) -> str:
    """What a run trained on: 'CPU', a GPU's name, or 'A + B' for a run that moved. Runs exported before
    runs recorded it (up to session 23) all trained on the development CPUs (MODEL_CARD.md, Hardware)."""
    return " + ".join(run.get("hardware") or ["CPU"])


def training_hours(runs: list[dict]) -> dict[str, float]:
    """Hours of training steps by hardware (:func:`_hardware`)."""
    hours: dict[str, float] = {}
    for r in runs:
        key = _hardware(r)
        hours[key] = hours.get(key, 0.0) + r["hours"]
    return hours


def training_summary_text(training: dict) -> str:
    """Steps, hours and final losses of the runs behind a weights file (from its own metadata)."""
    runs = training.get("runs", [])
    if not runs:
        return f"Trained for {training.get('step', '?')} steps (no log summary stored)."
    rows = [[r["log"], _hardware(r), str(r["first_step"]), str(r["last_step"]), f"{r['hours']:.2f}", _objective(r),
             *(f"{r['final_100_steps_mean'][k]:.4f}" for k in ("loss", "full_bpp", "full_psnr", "full_lpips"))]
            for r in runs]
    by_hardware = training_hours(runs)
    parts = [f"{h:.2f} on {'the CPUs' if name == 'CPU' else name}" for name, h in by_hardware.items()]
    return (f"{training.get('step')} steps in {sum(by_hardware.values()):.2f} hours of training steps: "
            f"{', '.join(parts)} (wall time of the steps themselves"
            + ("; the CPUs were shared with development work" if "CPU" in by_hardware else "") + ").\n\n"
            + table(["log", "hardware", "first step", "last step", "hours", "objective", "loss", "bpp (all levels)",
                     "PSNR (all levels)", "LPIPS (all levels)"], rows)
            + "\n\nLoss terms are means over each run's last 100 steps, on that run's training crops "
              "(see the schedule above); each run's steps are numbered from 1. Objective: method.md's loss, "
              "plus W × the texture distance where a run used `--texture W` (docs/training.md); such a "
              "run's loss includes that term, so it does not compare with the other runs' loss. After the "
              "semicolon, issue 48's options of the run's last leg (docs/training.md): with them the loss "
              "weighs the levels differently and does not compare either.")


def _objective(run: dict) -> str:
    """'method.md' or 'method.md + 0.5 × texture', from the run's recorded settings (exported with it)
    or, for runs exported before settings were recorded, from whether its log has a texture term;
    then issue 48's options where the run set them (docs/training.md, the flags of the same names)."""
    settings = run.get("settings", {})
    texture = settings.get("texture")
    if texture:
        base = f"method.md + {texture:g} × texture"
    elif texture is None and "full_texture" in run.get("final_100_steps_mean", {}):
        base = "method.md + texture"
    else:
        base = "method.md"
    options = []
    if settings.get("decoder_only"):
        options.append("g_s only")
    if settings.get("deterministic_share"):
        start = settings.get("deterministic_from") or 1
        options.append(f"{settings['deterministic_share']:g} of level steps at spread 0"
                       + (f" from level {start}" if start > 1 else ""))
    if settings.get("low_levels") is not None:
        options.append(f"levels 1–8 drawn {settings['low_levels']:g}")
    if settings.get("full_weight") not in (None, 0.5):
        options.append(f"L_full × {settings['full_weight']:g}")
    if settings.get("low_mse") not in (None, 1.0):
        options.append(f"levels 1–8 MSE × {settings['low_mse']:g}")
    if settings.get("high_mse") not in (None, 1.0):
        options.append(f"levels 9–16 MSE × {settings['high_mse']:g}")
    if settings.get("dists"):
        upto = settings.get("dists_levels") or 0
        options.append(f"DISTS × {settings['dists']:g}" + (f" at levels 1–{upto}" if upto else ""))
    if settings.get("adversarial"):
        options.append(f"adversarial × {settings['adversarial']:g}")
    if settings.get("level_film"):
        factor = settings.get("level_film_lr") or 1.0
        options.append("level tables" + (f" at {factor:g} × the rate" if factor != 1.0 else ""))
    return base + ("; " + ", ".join(options) if options else "")


def update_model_card(card: Path, results: dict, training: dict) -> Path:
    """Fill the model card's training and curve sections from the weights and results.json."""
    card = Path(card)
    text = _replace_section(card.read_text(), "training", training_summary_text(training))
    curve = (f"_Generated by `python -m sicc.bench readme` from the benchmark of model `{results['model']['id']}` "
             f"({results['date']})._\n\n" + levels_table(results) + "\n\n" + matched_table(results, "dists")
             + "\n\n" + matched_table(results, "psnr"))
    card.write_text(_replace_section(text, "curve", curve))
    return card


def _relative(path: Path, readme: Path) -> str:
    """``path`` as a link relative to the README's folder."""
    return Path(os.path.relpath(path.resolve(), readme.resolve().parent)).as_posix()
