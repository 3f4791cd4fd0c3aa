"""Speed and memory on this machine: sicc against JPEG XL and AVIF.

Three views of speed, because they answer different questions:
- in-process (library call, model already loaded): the codec's own cost;
- end-to-end commands (``sicc encode``/``sicc decode``, ``cjxl``/``avifenc``),
  process start and imports included: what a user waits for;
- extra decode seconds per additional sample (synonymous decoding).
Peak memory is the peak RSS of a fresh process coding one large frame.
All timings are medians; the load average is recorded since the machine may be shared.
"""

from __future__ import annotations

import io
import os
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..container import padded_pixels
from .baselines import AVIF_SPEED, JXL_EFFORT
from .images import BenchImage, large_frame
from .procs import ProcResult, child_env, python_cmd, run_measured, which

JXL_DISTANCE = 10.0  # about 0.3 bpp on Kodak
AVIF_QUALITY = 30  # about 0.3 bpp on Kodak
AVIF_QUANTIZER = ((100 - AVIF_QUALITY) * 63 + 50) // 100  # libavif's quality -> quantizer mapping
CODEC_SETTINGS = {
    "jxl": {"distance": JXL_DISTANCE, "effort": JXL_EFFORT},
    "avif": {"quality": AVIF_QUALITY, "quantizer": AVIF_QUANTIZER, "speed": AVIF_SPEED, "subsampling": "4:2:0"},
}


@dataclass
class SpeedSettings:
    images: list[BenchImage]
    repeats: int = 3
    extra_samples: int = 3  # decode with 1 + extra_samples samples to get the per-sample cost
    memory_sizes: tuple[tuple[int, int], ...] = ((3840, 2160), (16384, 16384))
    weights: Path | None = None
    threads: int | None = None
    timeout: float = 1800.0
    batch_images: list[Path] | None = None  # files encoded as one batch and as one process each
    settle_s: float = 0.0  # wait up to this long for the 1-minute load average to fall below SETTLE_LOAD


SETTLE_LOAD = 1.0
"""The speed part starts once the 1-minute load average is below this (or ``settle_s`` has passed):
right after the benchmark's own metric phase it still reads about 2 on two cores although nothing
else runs, so the load printed beside the timings would say "busy" about a quiet machine."""


def settle_load(max_seconds: float, limit: float = SETTLE_LOAD, poll: float = 5.0,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Sleep until the 1-minute load average is below ``limit``, at most ``max_seconds``; the seconds waited."""
    start = clock()
    while os.getloadavg()[0] >= limit and clock() - start < max_seconds:
        sleep(min(poll, max(max_seconds - (clock() - start), 0.0)))
    return round(clock() - start, 1)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _per_image_median(images: list[BenchImage], fn: Callable[[BenchImage], float]) -> float:
    return statistics.median(fn(img) for img in images)


def sicc_inprocess(codec, s: SpeedSettings) -> dict:
    """Library encode / full decode (deterministic and sampled) / per-extra-sample seconds."""
    from .progressive import file_levels, truncate

    encoded = {img.name: codec.encode(img.image) for img in s.images}  # also warms up the model
    # A complete file decodes deterministically; sampling only happens for missing levels.
    half = {name: truncate(data, len(file_levels(data)[0]) // 2) for name, data in encoded.items()}

    def decode(files: dict[str, bytes], img: BenchImage, samples: int, spread: float) -> float:
        data = files[img.name]
        return median_seconds(lambda: codec.decode(data, samples=samples, seed=0, spread=spread), s.repeats)

    one = _per_image_median(s.images, lambda img: decode(half, img, 1, 2.0))
    many = _per_image_median(s.images, lambda img: decode(half, img, 1 + s.extra_samples, 2.0))
    return {
        "encode_s": _per_image_median(s.images, lambda img: median_seconds(lambda: codec.encode(img.image), s.repeats)),
        "decode_s": _per_image_median(s.images, lambda img: decode(encoded, img, 1, 0.0)),
        "sampled_level": len(file_levels(next(iter(half.values())))[0]),
        "decode_sampled_s": one,
        "extra_sample_s": (many - one) / s.extra_samples,
        "samples_compared": [1, 1 + s.extra_samples],
    }


def sicc_cli_command() -> tuple[list[str] | None, str]:
    """How to call the ``sicc`` command: the installed script, else ``python -m sicc``, else sicc.cli.run."""
    import importlib.util

    script = which("sicc")
    if script:
        return [script], script
    if importlib.util.find_spec("sicc.__main__") is not None:
        return python_cmd("-m", "sicc"), "python -m sicc"
    if importlib.util.find_spec("sicc.cli") is not None:
        code = "import sys; from sicc.cli import run; sys.argv[0] = 'sicc'; run()"
        return python_cmd("-c", code), "python -c 'from sicc.cli import run; run()' (no sicc script installed)"
    return None, "no `sicc` script, no sicc/__main__.py, no sicc.cli"


def _cli_options(cli: list[str], s: SpeedSettings, env: dict) -> tuple[list[str] | None, str]:
    """Global CLI options selecting the benchmarked model and thread count, or None when the CLI cannot."""
    if s.weights is None and not s.threads:
        return [], ""
    help_text = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=env).stdout
    options = []
    if s.weights is not None:
        if "--weights" not in help_text:
            return None, "the CLI has no --weights option, so it would time the default model instead"
        options += ["--weights", str(s.weights)]
    if s.threads and "--threads" in help_text:
        options += ["--threads", str(s.threads)]
    return options, ""


def _median_proc(cmd: list[str], repeats: int, env: dict, timeout: float) -> ProcResult:
    runs = [run_measured(cmd, timeout=timeout, env=env) for _ in range(repeats)]
    bad = [r for r in runs if not r.ok]
    if bad:
        raise RuntimeError(f"{' '.join(cmd)} failed ({bad[0].returncode}): {bad[0].stderr_tail}")
    return sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]


def sicc_cli(s: SpeedSettings, workdir: Path) -> dict:
    """``sicc encode`` / ``sicc decode`` end to end, process start and imports included."""
    env = child_env(s.threads)
    cli, how, unavailable = _sicc_cli(s, env)
    if unavailable:
        return unavailable
    enc, dec = [], []
    for img in s.images:
        src, sic, png = workdir / f"{img.name}.png", workdir / f"{img.name}.sic", workdir / f"{img.name}.dec.png"
        img.image.save(src)
        enc.append(_median_proc([*cli, "encode", str(src), "-o", str(sic)], s.repeats, env, s.timeout))
        dec.append(_median_proc([*cli, "decode", str(sic), "-o", str(png)], s.repeats, env, s.timeout))
    startup = _median_proc([*cli, "--help"], s.repeats, env, s.timeout)
    return {
        "available": True,
        "command": how,
        "encode_s": statistics.median(r.seconds for r in enc),
        "decode_s": statistics.median(r.seconds for r in dec),
        "startup_s": startup.seconds,
        "encode_max_rss_mib": max(r.max_rss_mib for r in enc),
        "decode_max_rss_mib": max(r.max_rss_mib for r in dec),
    }


def sicc_batch(s: SpeedSettings, workdir: Path) -> dict:
    """A folder encoded by one ``sicc encode DIR -j N`` against one ``sicc encode`` per image."""
    from .batchspeed import batch_vs_processes

    env = child_env(s.threads)
    cli, how, unavailable = _sicc_cli(s, env)
    if unavailable:
        return unavailable
    result = batch_vs_processes(cli, env, s.batch_images, workdir / "batch", timeout=s.timeout)
    return {**result, "command": how}


def _sicc_cli(s: SpeedSettings, env: dict) -> tuple[list[str], str, dict | None]:
    """The ``sicc`` command with this run's options, how it was found, or why it cannot run."""
    cli, how = sicc_cli_command()
    if cli is None:
        return [], how, {"available": False, "reason": how}
    options, reason = _cli_options(cli, s, env)
    if options is None:
        return [], how, {"available": False, "reason": reason, "command": how}
    return [*cli, *options], how + (" " + " ".join(options) if options else ""), None


def _jxl_encode(img: Image.Image, effort: int = JXL_EFFORT) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(np.asarray(img), distance=JXL_DISTANCE, effort=effort))


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    return imagecodecs.jpegxl_decode(data)


def _avif_encode(img: Image.Image, speed: int = AVIF_SPEED) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="AVIF", quality=AVIF_QUALITY, speed=speed, subsampling="4:2:0")
    return buf.getvalue()


def _avif_decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


LIBRARY_CODECS = {"jxl": (_jxl_encode, _jxl_decode), "avif": (_avif_encode, _avif_decode)}


def baseline_library(s: SpeedSettings) -> dict:
    """JPEG XL (imagecodecs) and AVIF (Pillow) encode / decode seconds per image."""
    out = {}
    for name, (encode, decode) in LIBRARY_CODECS.items():
        try:
            out[name] = {"available": True, "settings": CODEC_SETTINGS[name], **_library_times(encode, decode, s)}
        except Exception as exc:  # noqa: BLE001 - report and go on
            out[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    return out


def _library_times(encode: Callable, decode: Callable, s: SpeedSettings) -> dict:
    encoded = {img.name: encode(img.image) for img in s.images}
    return {
        "encode_s": _per_image_median(s.images, lambda img: median_seconds(lambda: encode(img.image), s.repeats)),
        "decode_s": _per_image_median(s.images, lambda img: median_seconds(lambda: decode(encoded[img.name]),
                                                                           s.repeats)),
    }


def _tool_commands(src: Path, coded: Path, dst: Path) -> dict[str, tuple[list[str], list[str]]]:
    return {
        "jxl": (
            ["cjxl", str(src), str(coded), "-d", str(JXL_DISTANCE), "-e", str(JXL_EFFORT)],
            ["djxl", str(coded), str(dst)],
        ),
        "avif": (
            ["avifenc", "--min", str(AVIF_QUANTIZER), "--max", str(AVIF_QUANTIZER), "-s", str(AVIF_SPEED), "-y", "420",
             str(src), str(coded)],
            ["avifdec", str(coded), str(dst)],
        ),
    }


def baseline_tools() -> dict[str, str | None]:
    """Each external tool the end-to-end speed rows run (``cjxl``, ``djxl``, ``avifenc``, ``avifdec``),
    with its path on PATH, or ``None`` where it is not installed."""
    names = [cmd[0] for pair in _tool_commands(Path("a"), Path("b"), Path("c")).values() for cmd in pair]
    return {name: which(name) for name in names}


def baseline_commands(s: SpeedSettings, workdir: Path) -> dict:
    """``cjxl``/``djxl`` and ``avifenc``/``avifdec`` end to end, when installed."""
    out = {}
    installed = baseline_tools()
    for name in ("jxl", "avif"):
        probe = _tool_commands(Path("a"), Path("b"), Path("c"))[name]
        missing = [cmd[0] for cmd in probe if installed[cmd[0]] is None]
        if missing:
            out[name] = {"available": False, "reason": f"not installed: {', '.join(missing)}"}
            continue
        enc, dec = [], []
        try:
            for img in s.images:
                src = workdir / f"{img.name}.png"
                img.image.save(src)
                enc_cmd, dec_cmd = _tool_commands(src, workdir / f"{img.name}.{name}",
                                                  workdir / f"{img.name}.{name}.png")[name]
                enc.append(_median_proc(enc_cmd, s.repeats, None, s.timeout))
                dec.append(_median_proc(dec_cmd, s.repeats, None, s.timeout))
        except RuntimeError as exc:
            out[name] = {"available": False, "reason": str(exc)}
            continue
        out[name] = {
            "available": True,
            "encode_command": " ".join(_tool_commands(Path("IN.png"), Path("OUT"), Path("OUT.png"))[name][0]),
            "version": _tool_version(enc_cmd[0]),
            "encode_s": statistics.median(r.seconds for r in enc),
            "decode_s": statistics.median(r.seconds for r in dec),
        }
    return out


def _tool_version(tool: str) -> str:
    """``tool 1.2.3`` from the first version number ``tool --version`` prints."""
    try:
        text = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
        found = re.search(r"\d+\.\d+(\.\d+)?", text.stdout + text.stderr)
        return f"{tool} {found.group(0)}" if found else tool
    except (OSError, subprocess.SubprocessError):
        return tool


LIBRARY_DECODE_SNIPPETS = {
    "jxl-decode": "import sys, imagecodecs; from PIL import Image; "
                  "Image.fromarray(imagecodecs.jpegxl_decode(open(sys.argv[1], 'rb').read())).save(sys.argv[2])",
    "avif-decode": "import sys; from PIL import Image; Image.MAX_IMAGE_PIXELS = None; "
                   "Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2])",
}
"""Baseline decodes for the memory probe, without importing sicc (and so torch)."""


FAST_BASELINE_PIXELS = 1 << 26
"""Above this many pixels the JPEG XL and AVIF files for the decode probes are made at their
fastest settings: encoding 268 MP at the benchmark's efforts would take longer than the rest of
the run, and the decoders' memory is what is measured."""


def _baseline_memory_files(frame: Image.Image, jxl: Path, avif: Path) -> dict:
    """Write the JPEG XL and AVIF files the decode probes read; returns the encode settings."""
    fast = frame.width * frame.height > FAST_BASELINE_PIXELS
    jxl_effort, avif_speed = (1, 10) if fast else (JXL_EFFORT, AVIF_SPEED)
    jxl.write_bytes(_jxl_encode(frame, jxl_effort))
    avif.write_bytes(_avif_encode(frame, avif_speed))
    return {"jxl": {"distance": JXL_DISTANCE, "effort": jxl_effort},
            "avif": {"quality": AVIF_QUALITY, "speed": avif_speed, "subsampling": "4:2:0"}}


def peak_memory(s: SpeedSettings, workdir: Path, size: tuple[int, int]) -> dict:
    """Peak RSS of fresh processes encoding / decoding one large frame (sicc, JPEG XL, AVIF)."""
    w, h = size
    frame = large_frame(s.images, w, h)
    src = workdir / "large.png"
    frame.save(src, compress_level=1)
    env = child_env(s.threads)
    weights = ["--weights", str(s.weights)] if s.weights else []
    threads = ["--threads", str(s.threads)] if s.threads else []
    budget = ["--max-pixels", str(padded_pixels(w, h))]  # a 16K frame is over the default budget

    def probe(op: str, a: Path | str, b: Path | str) -> ProcResult:
        if op in LIBRARY_DECODE_SNIPPETS:
            cmd = python_cmd("-c", LIBRARY_DECODE_SNIPPETS[op], str(a), str(b))
        else:
            cmd = python_cmd("-m", "sicc.bench.memprobe", op, str(a), str(b), *weights, *threads, *budget)
        return run_measured(cmd, timeout=s.timeout, env=env)

    out: dict = {"size": [w, h], "source": "Kodak tiles, Lanczos-resized", "what": "peak RSS of a fresh process (MiB)"}
    sic = workdir / "large.sic"
    runs = {
        "sicc_load_only": probe("sicc-load", "-", "-"),
        "sicc_encode": probe("sicc-encode", src, sic),
    }
    if runs["sicc_encode"].ok:
        runs["sicc_decode"] = probe("sicc-decode", sic, workdir / "large.dec.png")
        out["sicc_file_bytes"] = sic.stat().st_size
    jxl, avif = workdir / "large.jxl", workdir / "large.avif"
    try:
        out["baseline_encode_settings"] = _baseline_memory_files(frame, jxl, avif)
        del frame
        runs["jxl_decode_library"] = probe("jxl-decode", jxl, workdir / "large.jxl.png")
        if which("djxl"):
            runs["jxl_decode_djxl"] = run_measured(["djxl", str(jxl), str(workdir / "large.djxl.png")], s.timeout)
        runs["avif_decode_library"] = probe("avif-decode", avif, workdir / "large.avif.png")
        if which("avifdec"):
            avifdec = ["avifdec", str(avif), str(workdir / "large.avifdec.png")]
            runs["avif_decode_avifdec"] = run_measured(avifdec, s.timeout)
    except Exception as exc:  # noqa: BLE001
        out["baseline_error"] = str(exc)
    for key, r in runs.items():
        out[key] = {"max_rss_mib": r.max_rss_mib, "seconds": r.seconds, "ok": r.ok}
        if not r.ok:
            out[key]["error"] = r.stderr_tail[-500:]
    for leftover in workdir.glob("large*"):
        leftover.unlink()
    return out


def peak_memory_sizes(s: SpeedSettings, workdir: Path) -> list[dict]:
    """:func:`peak_memory` at every size; a size that fails is reported, the others still run."""
    out = []
    for size in s.memory_sizes:
        try:
            out.append(peak_memory(s, workdir, size))
        except Exception as exc:  # noqa: BLE001
            out.append({"size": list(size), "available": False, "reason": f"{type(exc).__name__}: {exc}"})
    return out


def run_speed(codec, s: SpeedSettings, skip_memory: bool = False) -> dict:
    """Every speed and memory measurement; a part that fails is reported, not fatal."""
    settled = settle_load(s.settle_s) if s.settle_s else 0.0
    out: dict = {
        "images": [img.name for img in s.images],
        "image_sizes": [list(img.image.size) for img in s.images],
        "repeats": s.repeats,
        "statistic": "median over repeats, then median over images",
        "settle_s": settled,
        "load_average_before": list(os.getloadavg()),
        "settings": CODEC_SETTINGS,
    }
    with tempfile.TemporaryDirectory(prefix="sicc-bench-") as tmp:
        work = Path(tmp)
        parts: dict[str, Callable[[], dict]] = {
            "sicc_inprocess": lambda: sicc_inprocess(codec, s),
            "sicc_cli": lambda: sicc_cli(s, work),
            "baseline_library": lambda: baseline_library(s),
            "baseline_commands": lambda: baseline_commands(s, work),
        }
        if s.batch_images:
            parts["sicc_batch"] = lambda: sicc_batch(s, work)
        if not skip_memory and s.memory_sizes:
            parts["memory"] = lambda: peak_memory_sizes(s, work)
        for key, part in parts.items():
            try:
                out[key] = part()
            except Exception as exc:  # noqa: BLE001
                out[key] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    out["load_average_after"] = list(os.getloadavg())
    return out
