"""The benchmark run: images -> sicc levels, baselines, synonymy, speed -> one results dict.

Kept separate from the CLI so tests (and notebooks) can call ``run_bench``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..fileio import file_sha256
from . import curves
from .baselines import Baseline, baselines
from .cache import BaselineCache, image_digest, metrics_version, row_key
from .images import BenchImage, default_kodak_dir, load_images
from .metrics import LOWER_IS_BETTER, Metrics
from .progressive import DET, SAMPLED, DecodeMode, evaluate_image, load_codec
from .reference import MS_ILLM_SOURCE, ms_illm_kodak
from .speed import SpeedSettings, run_speed
from .synonymy import diversity, idempotence

SCHEMA = "sicc-bench/1"
SPEED_SETTLE_S = 120.0
"""At most this long for the machine to quieten after the metric phase before the speed part."""
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_out_dir() -> Path:
    return REPO_ROOT / "bench"


@dataclass
class BenchConfig:
    """Everything that changes what the benchmark measures (stored in results.json)."""

    images_dir: Path = field(default_factory=default_kodak_dir)
    images: int | None = None  # None: all
    crop: int | None = None  # centre crop to crop x crop (tests)
    quick: bool = False
    levels: tuple[int, ...] | None = None  # None: every level in the file
    weights: Path | None = None  # None: the shipped model
    device: str = "cpu"  # where the metrics run; the codec picks its own
    threads: int | None = None
    spread: float = 2.0
    seed: int = 0
    codecs: tuple[str, ...] = ("jpeg", "webp", "avif", "jxl")
    modes: tuple[str, ...] = ("det", "sampled")  # sicc decodes measured
    reuse_baselines: bool = True  # baseline rows from the cache / bench/results.json when their key matches
    baseline_cache: Path | None = None  # None: cache.default_cache_path()
    synonymy_images: int = 4
    diversity_samples: int = 4
    idempotence_levels: tuple[int, ...] = (4, 8, 16)
    generations: int = 5
    skip_speed: bool = False
    skip_memory: bool = False
    speed_images: int = 3
    speed_repeats: int = 3
    memory_sizes: tuple[tuple[int, int], ...] = ((3840, 2160), (16384, 16384))
    progress: bool = True

    def apply_quick(self) -> "BenchConfig":
        """--quick: 2 images, short codec sweeps, light synonymy and speed parts."""
        self.quick = True
        self.images = min(self.images or 2, 2)
        self.synonymy_images = min(self.synonymy_images, 1)
        # A middle level: at the last level a file decodes deterministically, so sampling would not show.
        self.idempotence_levels = (self.idempotence_levels[len(self.idempotence_levels) // 2],)
        self.generations = min(self.generations, 2)
        self.speed_images = 1
        self.speed_repeats = 1
        self.memory_sizes = ((1920, 1080),)
        return self


def run_bench(config: BenchConfig, command: str | None = None) -> dict:
    """Run every part of the benchmark and return the results dict (see write_results)."""
    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    machine = machine_info(config)  # before the run: its load average is the one timings start under
    images = load_images(config.images_dir, config.images, config.crop)
    codec = load_codec(config.weights)
    metrics = Metrics(config.device)
    modes = [m for m in (DecodeMode(DET, 0.0), DecodeMode(SAMPLED, config.spread, config.seed))
             if m.name in config.modes]
    codecs = [b for b in baselines() if b.name in config.codecs]
    availability = {b.name: b.available() for b in codecs}
    cache = _baseline_cache(config, images)

    sicc_rows: list[dict] = []
    baseline_rows: dict[str, list[dict]] = defaultdict(list)
    diversity_rows: list[dict] = []
    idempotence_rows: list[dict] = []
    model_ids, prefix_ok = set(), True
    parts = defaultdict(float)  # seconds spent in each part of the run, for results["duration_parts_s"]
    bar = tqdm(images, desc="bench", unit="img", disable=not config.progress)
    for i, img in enumerate(bar):
        bar.set_postfix_str(img.name)
        tr = time.perf_counter()
        ref = metrics.reference(img.image)  # the original's metric features, shared by every codec below
        t0 = time.perf_counter()
        parts["reference"] += t0 - tr
        result = evaluate_image(codec, metrics, img, ref, modes, config.levels)
        sicc_rows += result.rows
        t1 = time.perf_counter()
        parts["sicc"] += t1 - t0
        model_ids.add(result.model_id)
        prefix_ok &= result.prefix_ok
        for b in codecs:
            if availability[b.name][0]:
                baseline_rows[b.name] += _baseline_image(b, metrics, img, ref, config.quick, cache)
        t2 = time.perf_counter()
        parts["baselines"] += t2 - t1
        with_synonymy = i < config.synonymy_images and SAMPLED in config.modes
        if with_synonymy:
            diversity_rows += diversity(codec, metrics, img, result, modes[1], config.diversity_samples)
            for mode in modes:
                idempotence_rows += idempotence(
                    codec, metrics, img, ref, result, mode, list(config.idempotence_levels), config.generations
                )
        t3 = time.perf_counter()
        parts["synonymy"] += t3 - t2
        if not config.progress:  # without the bar, a plain line per image: a long run can be followed in its log
            # The image's own time and its synonymy share: the first synonymy_images take about twice as long
            # as the rest, which a pace read from the first few lines alone would mistake for a slow machine.
            synonymy_part = f", synonymy {t3 - t2:.0f} s" if with_synonymy else ""
            _note(f"{img.name} done ({i + 1}/{len(images)} images, {time.time() - started:.0f} s; "
                  f"this image {t3 - tr:.0f} s{synonymy_part})")

    results = {
        "schema": SCHEMA,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command or "python -m sicc.bench " + shlex.join(sys.argv[1:]),
        "machine": machine,
        "model": model_info(config.weights, model_ids),
        "settings": _settings(config, images),
        "metrics": _metric_notes(),
        "sicc": _sicc_section(sicc_rows, modes, prefix_ok),
        "baselines": _baselines_section(codecs, availability, baseline_rows),
        "reference": {"ms_illm": {**MS_ILLM_SOURCE, "points": ms_illm_kodak()}},
    }
    if cache is not None:
        cache.save()
        results["baselines_cache"] = {"path": str(cache.path), "reused_rows": cache.hits, "measured_rows": cache.misses}
    results["matched"] = _matched_section(results)
    results["synonymy"] = _synonymy_section(config, images, diversity_rows, idempotence_rows)
    if config.skip_speed:
        results["speed"] = {"skipped": True}
    else:
        if not config.progress:
            _note(f"speed and memory part ({time.time() - started:.0f} s)")
        t0 = time.perf_counter()
        results["speed"] = run_speed(codec, speed_settings(config, images), skip_memory=config.skip_memory)
        parts["speed"] = time.perf_counter() - t0
    results["per_image"] = {"sicc": sicc_rows, "baselines": dict(baseline_rows)}
    results["duration_s"] = time.time() - started
    # Where the time went: the sicc rows (encode, decodes, metrics), the baselines (cache misses
    # only cost time), diversity and idempotence, and the speed and memory part.
    results["duration_parts_s"] = {k: round(v, 1) for k, v in parts.items()}
    return results


def _note(line: str) -> None:
    """A progress line on stderr, for runs without the progress bar (--no-progress)."""
    print(f"bench: {line}", file=sys.stderr, flush=True)


def speed_settings(config: BenchConfig, images: list[BenchImage]) -> SpeedSettings:
    return SpeedSettings(
        images=images[: config.speed_images], repeats=config.speed_repeats, memory_sizes=config.memory_sizes,
        weights=config.weights, threads=config.threads,
        batch_images=sorted(Path(config.images_dir).glob("*.png"))[: config.images],
        settle_s=0.0 if config.quick else SPEED_SETTLE_S,
    )


def rerun_speed(results: dict, command: str, memory: bool = False) -> dict:
    """Measure the speed part of ``results`` again (same images, repeats, weights and threads) and put
    it in place; the memory part is kept unless ``memory``. The rerun is recorded in ``speed.rerun``."""
    s = results["settings"]
    config = BenchConfig(images=s.get("images"), crop=s.get("crop"), weights=Path(s["weights"]) if s.get("weights") else None,
                         threads=s.get("threads"), speed_images=s["speed_images"], speed_repeats=s["speed_repeats"],
                         memory_sizes=tuple(tuple(x) for x in s["memory_sizes"]))
    config.images_dir = Path(s["images_dir"])
    if config.threads:
        torch.set_num_threads(config.threads)
    images = load_images(config.images_dir, config.images, config.crop)
    old = results.get("speed", {})
    speed = run_speed(load_codec(config.weights), speed_settings(config, images), skip_memory=not memory)
    if not memory and "memory" in old:
        speed["memory"] = old["memory"]
    speed["rerun"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": command,
        "git_commit": _git("rev-parse", "HEAD"), "memory_remeasured": memory,
    }
    results["speed"] = speed
    return results


def _baseline_cache(config: BenchConfig, images: list[BenchImage]) -> BaselineCache | None:
    """The cache of baseline rows, seeded from the committed results (None: measure everything)."""
    if not config.reuse_baselines:
        return None
    cache = BaselineCache(config.baseline_cache)
    committed = default_out_dir() / "results.json"
    if committed.is_file():
        try:
            cache.seed_from_results(read_results(committed), {img.name: image_digest(img.image) for img in images})
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable seed only means measuring again
    return cache


def _baseline_image(b: Baseline, metrics: Metrics, img: BenchImage, ref, quick: bool,
                    cache: BaselineCache | None = None) -> list[dict]:
    rows = []
    digest, versions = image_digest(img.image), metrics_version()
    for q in b.quick_sweep if quick else b.sweep:
        key = row_key(b.name, b.library, b.settings, b.knob, q, digest, versions)
        row = cache.get(key) if cache is not None else None
        if row is None:
            data, decoded = b.roundtrip(img.image, q)
            row = {"image": img.name, b.knob: q, "bytes": len(data), "bpp": len(data) * 8 / img.pixels,
                   **metrics.compare(ref, decoded), "image_sha256": digest, "metrics_version": versions}
            if cache is not None:
                cache.put(key, row)
        rows.append({**row, "image": img.name})
    return rows


def _sicc_section(rows: list[dict], modes: list[DecodeMode], prefix_ok: bool) -> dict:
    return {
        "label": "sicc",
        "modes": {m.name: {"spread": m.spread, "seed": m.seed} for m in modes},
        "rate": "bytes of the real file prefix returned by sicc.truncate(data, level=L), times 8 / pixels",
        "truncate_is_prefix": prefix_ok,
        "levels": {m.name: curves.group_mean([r for r in rows if r["mode"] == m.name], "level") for m in modes},
    }


def _baselines_section(codecs: list[Baseline], availability: dict, rows: dict[str, list[dict]]) -> dict:
    out = {}
    for b in codecs:
        ok, reason = availability[b.name]
        out[b.name] = {
            "label": b.label, "available": ok, "library": b.library, "knob": b.knob, "settings": b.settings,
            "points": sorted(curves.group_mean(rows.get(b.name, []), b.knob), key=lambda p: p["bpp"] or 0.0),
        }
        if not ok:
            out[b.name]["reason"] = reason
    return out


def curve_points(results: dict) -> dict[str, list[dict]]:
    """Every average RD curve in the results, by name (sicc modes, baselines, reference)."""
    out = {f"sicc_{mode}": pts for mode, pts in results["sicc"]["levels"].items()}
    out.update({name: b["points"] for name, b in results["baselines"].items() if b["available"]})
    out["ms_illm"] = results["reference"]["ms_illm"]["points"]
    return out


def curve_labels(results: dict) -> dict[str, str]:
    labels = {f"sicc_{mode}": f"sicc ({mode})" for mode in results["sicc"]["levels"]}
    labels.update({name: b["label"] for name, b in results["baselines"].items()})
    labels["ms_illm"] = "MS-ILLM (published)"
    return labels


def _matched_section(results: dict) -> dict:
    points = curve_points(results)
    level_bpps = [p["bpp"] for p in results["sicc"]["levels"][DET]]
    return {
        "method": curves.MATCH_METHOD,
        "targets": list(curves.TARGET_BPPS),
        "labels": curve_labels(results),
        "at_targets": {name: curves.matched(pts, curves.TARGET_BPPS) for name, pts in points.items()},
        "at_sicc_levels": {
            "levels": [p["level"] for p in results["sicc"]["levels"][DET]],
            "bpp": level_bpps,
            "codecs": {name: curves.matched(pts, level_bpps) for name, pts in points.items()},
        },
    }


def _synonymy_section(config: BenchConfig, images: list[BenchImage], div_rows: list[dict],
                      idem_rows: list[dict]) -> dict:
    idem = {}
    for mode in (DET, SAMPLED):
        mode_rows = [r for r in idem_rows if r["mode"] == mode]
        groups: dict = defaultdict(list)
        for r in mode_rows:
            groups[(r["level"], r["generation"])].append(r)
        idem[mode] = [{"level": lv, "generation": g, "images": len(rs), **curves.mean_point(rs)}
                      for (lv, g), rs in sorted(groups.items())]
    return {
        "images": [img.name for img in images[: config.synonymy_images]],
        "diversity": {
            "what": f"mean pairwise LPIPS-alex between {config.diversity_samples} samples "
                    f"(seeds 0..{config.diversity_samples - 1}, spread {config.spread}) of the same file prefix",
            "levels": [{"level": p["level"], "images": p["images"], "mean_pairwise_lpips": p["mean_pairwise_lpips"]}
                       for p in _group_mean_key(div_rows, "level", "mean_pairwise_lpips")],
        },
        "idempotence": {
            "what": "generation 0 = decode of the level-L prefix; generation g = decode(truncate(encode("
                    "generation g-1), L)); metrics against the original; sampled mode uses seed+g",
            "levels": list(config.idempotence_levels),
            "generations": config.generations,
            **idem,
        },
        "per_image": {"diversity": div_rows, "idempotence": idem_rows},
    }


def _group_mean_key(rows: list[dict], key: str, value: str) -> list[dict]:
    groups: dict = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r[value])
    return [{key: k, "images": len(v), value: sum(v) / len(v)} for k, v in sorted(groups.items())]


def _settings(config: BenchConfig, images: list[BenchImage]) -> dict:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    settings["image_names"] = [img.name for img in images]
    settings["image_sizes"] = sorted({f"{img.image.width}x{img.image.height}" for img in images})
    return settings


def _metric_notes() -> dict:
    return {
        "psnr": "dB on 8-bit RGB, mean of per-image PSNR",
        "ms_ssim": "pytorch_msssim, 5 scales, RGB in [0,1]; null below 161 px per side",
        "lpips": "LPIPS v0.1 AlexNet (lpips package, offline weights), RGB in [-1,1]",
        "dists": "DISTS (DISTS_pytorch, offline VGG16 + alpha/beta), RGB in [0,1]",
        "lower_is_better": LOWER_IS_BETTER,
        "bpp": "file bytes * 8 / (width * height), mean over images",
    }


def machine_info(config: BenchConfig) -> dict:
    """What the speed numbers depend on (the load average shows a shared machine)."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "metrics_device": config.device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
    }
    return info


def model_info(weights: Path | None, model_ids: set) -> dict:
    path = Path(weights) if weights else _default_weights()
    ids = sorted(str(i) for i in model_ids if i is not None)
    return {
        "id": ids[0] if len(ids) == 1 else ids,
        "weights": str(path) if path else None,
        "weights_sha256": file_sha256(path) if path and path.is_file() else None,
        "shipped": weights is None,
    }


def _default_weights() -> Path | None:
    try:
        from ..model.weights import default_weights_path

        return default_weights_path()
    except Exception:  # noqa: BLE001
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _clean(value):
    """JSON-safe: non-finite floats become null, floats keep 6 significant digits."""
    if isinstance(value, float):
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _dumps(value, indent: int = 0) -> str:
    """JSON with every scalar-only object or array on one line (per-image rows stay readable)."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, dict) and value and not all(isinstance(v, scalar) for v in value.values()):
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and value and not all(isinstance(v, scalar) for v in value):
        pad = " " * (indent + 1)
        return "[\n" + ",\n".join(pad + _dumps(v, indent + 1) for v in value) + "\n" + " " * indent + "]"
    return json.dumps(value)


def write_results(results: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dumps(_clean(results)) + "\n")
    return path


def read_results(path: Path) -> dict:
    return json.loads(Path(path).read_text())
