"""Running the ``sicc`` command in tests.

``cli_inprocess`` calls :func:`sicc.cli.run`, the console-script entry point
itself (so exit codes and one-line usage errors are exactly what a user gets),
with click's I/O isolation; it costs milliseconds. ``cli_subprocess`` runs a
real process (a fraction of a second) for what needs one: pipes,
signals, separate runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One tile worker by default while a module's tests run (imported by a test module, it applies
    to it): the tiny model gains nothing from threads, and the suite shares the machine."""
    from sicc import tiling

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiling, "default_threads", lambda: 1)
        yield


one_torch_thread = one_thread  # the name test modules import


@dataclass
class CliResult:
    code: int
    stdout: bytes
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def cli_inprocess(args: list[str], input: bytes | None = None, cwd: Path | None = None) -> CliResult:
    """``sicc ARGS`` through :func:`sicc.cli.run` in this process."""
    from click.testing import CliRunner

    from sicc import cli

    runner = CliRunner()
    old_argv, old_cwd, old_showwarning = sys.argv, os.getcwd(), warnings.showwarning
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with warnings.catch_warnings(), runner.isolation(input=input) as streams:
            warnings.simplefilter("default")  # as in a fresh `sicc` process
            sys.argv = ["sicc", *map(str, args)]
            try:
                cli.run(standalone=False)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            stdout, stderr = streams[0].getvalue(), streams[1].getvalue()
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        warnings.showwarning = old_showwarning
    return CliResult(code, stdout, stderr.decode("utf-8", "replace"))


def sicc_command() -> list[str]:
    return [sys.executable, "-m", "sicc.cli"]


def _sigint_default() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Popen keywords for a child that a test interrupts with SIGINT. A process started in the
# background (`setsid cmd &`, nohup) inherits SIGINT as *ignored*, exec keeps it ignored, and
# Python then installs no handler: the child would never see the test's Ctrl-C. The child gets
# the default disposition back before exec, as it has in a terminal.
INTERRUPTIBLE = {"preexec_fn": _sigint_default}


def cli_subprocess(args: list[str], input: bytes | None = None, cwd: Path | None = None,
                   timeout: float = 180, **kwargs) -> CliResult:
    """``sicc ARGS`` as a separate process (``python -m sicc.cli``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SICC_WEIGHTS", None)
    proc = subprocess.run([*sicc_command(), *map(str, args)], input=input, capture_output=True, cwd=cwd,
                          timeout=timeout, env=env, **kwargs)
    return CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


def assert_error(result: CliResult, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and exactly one ``sicc: error:`` line holding ``fragments``."""
    assert result.code == code, (result.code, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr_lines
    assert len(lines) == 1 and lines[0].startswith("sicc: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def temp_files(folder: Path) -> list[str]:
    """Left-over temporary files of sicc's atomic writes (``.NAME.XXXX.tmp``) in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))
