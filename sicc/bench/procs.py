"""Running a command as a child process and measuring its wall time and peak memory.

Peak RSS is taken with ``wait4`` by a tiny launcher process, not by the
benchmark itself: on Linux a child's ``ru_maxrss`` starts from the RSS of the
process it was forked from, so a command forked straight from the benchmark
(which holds VGG16 and the codec, over a GiB) would report at least that much.
The launcher forks the command from a small interpreter and reports the
command's own wall time and ``ru_maxrss``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_LAUNCHER = r"""
import json, os, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(out, "w") as f:
    json.dump({"seconds": seconds, "maxrss_kib": usage.ru_maxrss, "code": os.waitstatus_to_exitcode(status)}, f)
"""


@dataclass
class ProcResult:
    seconds: float
    max_rss_mib: float
    returncode: int
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(cmd: list[str], timeout: float | None = None, env: dict | None = None) -> ProcResult:
    """Run ``cmd`` to completion: its wall seconds, peak RSS (MiB), exit code and the end of stderr."""
    with tempfile.TemporaryDirectory(prefix="sicc-proc-") as tmp:
        report = os.path.join(tmp, "usage.json")
        with open(os.path.join(tmp, "stderr"), "w+b") as err:
            launcher = [sys.executable, "-S", "-c", _LAUNCHER, report, *cmd]
            proc = subprocess.Popen(launcher, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher's own session: it and the command
                proc.wait()
                return ProcResult(float(timeout or 0), float("nan"), -signal.SIGKILL, f"timed out after {timeout} s")
            err.seek(0)
            tail = err.read()[-2000:].decode(errors="replace")
        if not os.path.exists(report):
            return ProcResult(float("nan"), float("nan"), proc.returncode or 1, tail)
        with open(report) as f:
            usage = json.load(f)
    rss_kib = usage["maxrss_kib"] / (1024 if sys.platform == "darwin" else 1)
    return ProcResult(usage["seconds"], rss_kib / 1024.0, usage["code"], tail)


def python_cmd(*args: str) -> list[str]:
    """``python -c``/``-m`` with this interpreter (so the child sees the same packages)."""
    return [sys.executable, *args]


def which(name: str) -> str | None:
    return shutil.which(name)


def child_env(threads: int | None) -> dict:
    """Environment for child processes: the repository importable, thread count pinned if asked."""
    env = dict(os.environ)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env
