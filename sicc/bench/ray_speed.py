"""What Ray costs: ``sicc cluster encode`` with 2 actors against ``sicc encode DIR -j 2`` on the 24
Kodak images (``make bench-ray``; needs ``pip install -e ".[ray]"``).

Both encode the same folder with two files at a time, one tile thread each, and must write the
same bytes. The batch command runs as a child process (``-v``: a line as each file is written);
the Ray job runs in this process on a local Ray started once (``ray.init``, reported apart) and
reports each file as its row arrives. For both: the end-to-end seconds, the seconds to the
first file done (interpreter or actors started, model loaded, one image), and the pace once
started, images per second between the first file done and the last: the overhead is the
batch command's pace over Ray's. Each is run ``--repeats`` times, alternating, and the best of
each kept (the machine is shared: the least disturbed run says what the engine costs). Prints
the figures and the load average before and after; ``--json`` writes them too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .images import default_kodak_dir
from .procs import run_measured


def kodak_images(folder: Path) -> list[Path]:
    images = sorted(folder.glob("kodim*.png"))
    if len(images) != 24:
        raise SystemExit(f"bench-ray: need the 24 Kodak images in {folder} (set SICC_KODAK); found {len(images)}")
    return images


def _timed_batch(cli: list[str], folder: Path, target: Path, jobs: int, env: dict) -> tuple[float, list[float]]:
    """``sicc encode FOLDER -o TARGET -j JOBS -v`` as a child process: its wall seconds and the
    moment each file's line (printed when the file is written) arrived."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen([*cli, "encode", str(folder), "-o", str(target), "-j", str(jobs), "-v"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    stamps, lines = [], []
    for line in proc.stderr:
        lines.append(line)
        if ".sic: " in line:
            stamps.append(time.perf_counter() - start)
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"bench-ray: sicc encode failed ({code}): {''.join(lines[-5:])}")
    return time.perf_counter() - start, stamps


def _steady(stamps: list[float]) -> float:
    """Images per second between the first file done and the last: the pace once started."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def measure(images: list[Path], repeats: int, workdir: Path, actors: int = 2) -> dict:
    import ray

    from .. import cluster

    folder = workdir / "kodak"
    folder.mkdir()
    for path in images:
        os.symlink(path.resolve(), folder / path.name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SICC_WEIGHTS", None)
    cli = [sys.executable, "-m", "sicc.cli"]
    result: dict = {"images": len(images), "actors": actors, "repeats": repeats, "cpus": os.cpu_count(),
                    "load_average_before": list(os.getloadavg()), "runs": []}
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    start = time.perf_counter()
    ray.init(num_cpus=actors, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    result["ray_init_s"] = time.perf_counter() - start
    try:
        for k in range(repeats):
            target = workdir / f"batch{k}"
            batch_s, batch_stamps = _timed_batch(cli, folder, target, actors, env)
            reference = {p.name: p.read_bytes() for p in sorted(target.glob("*.sic"))}
            out = workdir / f"ray{k}"
            stamps: list[float] = []
            start = time.perf_counter()
            report = cluster.encode([str(folder)], str(out), actors=actors, threads=1,
                                    on_result=lambda row: stamps.append(time.perf_counter() - start))
            ray_s = time.perf_counter() - start
            if report.done != len(images):
                raise SystemExit(f"bench-ray: the Ray job encoded {report.done} of {len(images)} ({report.first_error})")
            ray_files = {p.name: p.read_bytes() for p in sorted(out.glob("*.sic"))}
            result["runs"].append({
                "batch_s": batch_s, "batch_first_s": batch_stamps[0], "batch_steady": _steady(batch_stamps),
                "ray_s": ray_s, "ray_first_s": stamps[0], "ray_steady": _steady(stamps),
                "identical_outputs": ray_files == reference and len(reference) == len(images)})
    finally:
        ray.shutdown()
    result["load_average_after"] = list(os.getloadavg())
    runs = result["runs"]
    best = lambda key: max(r[key] for r in runs)  # noqa: E731  (the least disturbed run)
    fastest = lambda key: min(r[key] for r in runs)  # noqa: E731
    result["batch_images_per_s"] = best("batch_steady")
    result["ray_images_per_s"] = best("ray_steady")
    result["batch_end_to_end_s"] = fastest("batch_s")
    result["ray_end_to_end_s"] = fastest("ray_s")
    result["batch_first_s"] = fastest("batch_first_s")
    result["ray_first_s"] = fastest("ray_first_s")
    result["overhead_percent"] = (result["batch_images_per_s"] / result["ray_images_per_s"] - 1) * 100
    result["identical_outputs"] = all(r["identical_outputs"] for r in runs)
    return result


FRAME = (4000, 3000)
"""A 12-MP photo-like frame (Kodak tiles, ``images.large_frame``): the cost per megapixel and the
peak memory of one worker, for the scaling plan of docs/cluster.md."""


def frame_cost(images: list[Path], workdir: Path) -> dict:
    """``sicc encode FRAME.png --threads 1`` as a child process: the codec's seconds (its summary
    line), the process's wall seconds and peak RSS."""
    import re

    from PIL import Image

    from .images import BenchImage, large_frame

    sources = [BenchImage(p.stem, Image.open(p).convert("RGB")) for p in images]
    path = workdir / "frame.png"
    large_frame(sources, *FRAME).save(path, compress_level=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SICC_WEIGHTS", None)
    load_before = list(os.getloadavg())
    run = run_measured([sys.executable, "-m", "sicc.cli", "encode", str(path), "-o", str(workdir / "frame.sic"),
                        "--threads", "1"], timeout=1800, env=env)
    found = re.search(r", ([0-9.]+) s\s*$", run.stderr_tail.strip())
    if not run.ok or not found:
        raise SystemExit(f"bench-ray: sicc encode of the frame failed ({run.returncode}): {run.stderr_tail}")
    megapixels = FRAME[0] * FRAME[1] / 1e6
    encode_s = float(found.group(1))
    return {"frame": list(FRAME), "frame_encode_s": encode_s, "frame_process_s": run.seconds,
            "frame_peak_rss_mib": run.max_rss_mib, "s_per_megapixel_core": encode_s / megapixels,
            "frame_load_average_before": load_before}


def report_lines(r: dict) -> list[str]:
    load = lambda xs: ", ".join(f"{x:.1f}" for x in xs)  # noqa: E731
    frame = [] if "frame" not in r else [
        f"{r['frame'][0]}x{r['frame'][1]} frame, one tile thread: encode {r['frame_encode_s']:.2f} s "
        f"({r['s_per_megapixel_core']:.3f} s per megapixel per core), process {r['frame_process_s']:.2f} s, "
        f"peak RSS {r['frame_peak_rss_mib']:.0f} MiB (load average before {load(r['frame_load_average_before'])})"]
    if "runs" not in r:
        return frame
    n, j = r["images"], r["actors"]
    return frame + [
        f"{n} Kodak images, {j} files at a time (one tile thread each), {r['cpus']} CPUs; best of {r['repeats']} "
        f"runs each, alternating; load average before {load(r['load_average_before'])}, after "
        f"{load(r['load_average_after'])}",
        "| command | end to end s | first file done s | images/s once started |",
        "|---|---|---|---|",
        f"| `sicc encode DIR -o OUT -j {j}` (a process) | {r['batch_end_to_end_s']:.2f} | {r['batch_first_s']:.2f} | "
        f"{r['batch_images_per_s']:.2f} |",
        f"| `sicc cluster encode DIR -o OUT --actors {j}` (Ray running) | {r['ray_end_to_end_s']:.2f} | "
        f"{r['ray_first_s']:.2f} | {r['ray_images_per_s']:.2f} |",
        f"Ray start-up: ray.init {r['ray_init_s']:.2f} s (once per session), then {r['ray_first_s']:.2f} s to the "
        f"first file (actors started, model loaded, one image); the batch command's first file: "
        f"{r['batch_first_s']:.2f} s",
        f"Ray overhead once started (images/s between the first and the last file): "
        f"{r['overhead_percent']:+.1f} % (goal: at most 15 %); identical outputs: {r['identical_outputs']}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sicc.bench.ray_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kodak", type=Path, default=None, help="folder of kodim01.png ... kodim24.png")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--frame-only", action="store_true", help="only the 12-MP frame's cost")
    args = parser.parse_args(argv)
    images = kodak_images(args.kodak or default_kodak_dir())
    workdir = Path(tempfile.mkdtemp(prefix="sicc-bench-ray-"))
    try:
        result = {} if args.frame_only else measure(images, args.repeats, workdir)
        result.update(frame_cost(images, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report_lines(result)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
