"""Running a command as a child process and measuring its wall time and peak memory.

``os.wait4`` returns the resource usage of exactly that child, so its
``ru_maxrss`` is the child's own peak RSS (``RUSAGE_CHILDREN`` would instead
report the maximum over every child this process has ever waited for).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


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
    """Run ``cmd`` to completion; wall seconds, peak RSS (MiB), exit code and the end of stderr."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = None if timeout is None else start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace")
    rss_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return ProcResult(seconds, rss_kib / 1024.0, proc.returncode, tail)


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
