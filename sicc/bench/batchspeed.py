"""Batch encoding against one process per file: what a folder of photos costs.

``sicc encode DIR -o OUT -j N`` loads the model once and works on N files at a time (threads
sharing the model); a shell loop of ``sicc encode`` pays process start-up, imports and the model
load for every file; N batch processes on N parts of the folder, at once, are the process-based
alternative to ``-j N``. All are timed end to end as child processes (wall seconds), on the same
images, and their outputs are compared byte for byte (batch mode must not change a file).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .procs import run_measured

BATCH_JOBS = (1, 2)
"""``-j`` values timed: one file at a time, and two (this machine has 2 cores)."""


def batch_vs_processes(cli: list[str], env: dict, images: list[Path], workdir: Path,
                       jobs: tuple[int, ...] = BATCH_JOBS, timeout: float = 3600.0) -> dict:
    """Seconds to encode ``images`` as one batch command per ``-j`` value and as one ``sicc
    encode`` process per image (run one after the other, as a shell loop would)."""
    if not images:
        return {"available": False, "reason": "no images"}
    folder = workdir / "batch-in"
    folder.mkdir(parents=True, exist_ok=True)
    for path in images:  # the chosen images as one folder (links: nothing copied)
        link = folder / path.name
        if not link.exists():
            os.symlink(path.resolve(), link)
    out: dict = {"available": True, "images": len(images), "batch_s": {}, "load_average_before": list(os.getloadavg())}
    batch_files: dict[str, bytes] = {}
    for n in jobs:
        target = workdir / f"batch-j{n}"
        run = run_measured([*cli, "encode", str(folder), "-o", str(target), "-j", str(n), "-q"], timeout=timeout,
                           env=env)
        if not run.ok:
            raise RuntimeError(f"batch encode -j {n} failed ({run.returncode}): {run.stderr_tail}")
        out["batch_s"][str(n)] = run.seconds
        batch_files = {p.name: p.read_bytes() for p in sorted(target.glob("*.sic"))}
    separate = workdir / "separate"
    separate.mkdir(exist_ok=True)
    total = 0.0
    for path in images:
        run = run_measured([*cli, "encode", str(path), "-o", str(separate / f"{path.stem}.sic"), "-q"],
                           timeout=timeout, env=env)
        if not run.ok:
            raise RuntimeError(f"sicc encode {path.name} failed ({run.returncode}): {run.stderr_tail}")
        total += run.seconds
    out["separate_s"] = total
    out["identical_outputs"] = batch_files == {p.name: p.read_bytes() for p in sorted(separate.glob("*.sic"))}
    n = max(jobs)
    out["processes"] = n
    out["processes_s"] = _parallel_processes(cli, env, images, workdir / "processes", n, timeout)
    best = str(max(jobs))
    out["jobs"] = int(best)
    out["speedup"] = total / out["batch_s"][best] if out["batch_s"][best] else None
    out["load_average_after"] = list(os.getloadavg())
    return out


def _parallel_processes(cli: list[str], env: dict, images: list[Path], workdir: Path, n: int,
                        timeout: float) -> float:
    """Wall seconds of ``n`` batch processes started together, each on every n-th image with one
    tile thread (the cores split between processes instead of threads)."""
    commands = []
    for k in range(n):
        part = workdir / f"part{k}"
        part.mkdir(parents=True, exist_ok=True)
        for path in images[k::n]:
            os.symlink(path.resolve(), part / path.name)
        commands.append([*cli, "encode", str(part), "-o", str(workdir / f"out{k}"), "-q", "--threads", "1"])
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        runs = list(pool.map(lambda cmd: run_measured(cmd, timeout=timeout, env=env), commands))
    seconds = time.perf_counter() - start
    bad = [r for r in runs if not r.ok]
    if bad:
        raise RuntimeError(f"parallel batch processes failed ({bad[0].returncode}): {bad[0].stderr_tail}")
    return seconds
