"""scripts/ship.sh refuses bad input before any long step and leaves the repository as it was.

The full path (export, branch, 75-minute benchmark, verdict) is what a ship runs; here only its
guards, in a throwaway clone of this repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    dest = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", "--depth", "1", f"file://{REPO}", str(dest)], check=True)
    # The script and the package it runs are this working tree's, committed in the clone so that its tree is clean.
    for tree in ("scripts", "sicc"):
        shutil.copytree(REPO / tree, dest / tree, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _git(dest, "add", "-A", "scripts", "sicc")
    _git(dest, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-q", "--allow-empty", "-m",
         "the working tree's ship.sh and sicc")
    return dest


def _ship(clone: Path, *args: str, allow_missing_tools: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("SHIP_ALLOW_MISSING_TOOLS", None)
    if allow_missing_tools:
        env["SHIP_ALLOW_MISSING_TOOLS"] = "1"
    return subprocess.run(["bash", "scripts/ship.sh", *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=120)


def test_usage_and_missing_files_exit_2(clone, tmp_path):
    assert _ship(clone).returncode == 2
    proc = _ship(clone, str(tmp_path / "nope.pt"), str(tmp_path / "log.jsonl"))
    assert proc.returncode == 2 and "no such checkpoint" in proc.stderr
    log = tmp_path / "log.jsonl"
    log.write_text("")
    proc = _ship(clone, str(log), str(log), "a/b.jsonl")
    assert proc.returncode == 2 and "LOGNAME is a file name" in proc.stderr


def test_a_changed_tree_is_refused(clone, tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("")
    readme = clone / "README.md"
    before = readme.read_text()
    readme.write_text(before + "\nlocal edit\n")
    try:
        proc = _ship(clone, str(log), str(log))
        assert proc.returncode == 2 and "the working tree has changes" in proc.stderr
    finally:
        readme.write_text(before)


def test_a_failed_export_changes_nothing(clone, tmp_path):
    """Not a checkpoint: the export fails before the branch, so the clone keeps its branch and files."""
    bogus = tmp_path / "checkpoint.pt"
    bogus.write_bytes(b"not a checkpoint")
    log = tmp_path / "log.jsonl"
    log.write_text("")
    branch = _git(clone, "branch", "--show-current")
    proc = _ship(clone, str(bogus), str(log))
    assert proc.returncode == 2 and "export failed" in proc.stderr, proc.stderr
    assert _git(clone, "branch", "--show-current") == branch
    assert _git(clone, "status", "--porcelain") == ""


def test_missing_codec_tools_are_refused_before_the_export(clone, tmp_path):
    """Without SHIP_ALLOW_MISSING_TOOLS, a machine lacking cjxl/djxl/avifenc/avifdec stops at the tool check
    (before the export, so nothing changes); one that has them goes on to the export, which fails here."""
    from tests.conftest import TORCH_MISSING

    pytest.importorskip("torch", reason=TORCH_MISSING)  # the benchmark package
    from sicc.bench.speed import baseline_tools

    bogus = tmp_path / "checkpoint.pt"
    bogus.write_bytes(b"not a checkpoint")
    log = tmp_path / "log.jsonl"
    log.write_text("")
    branch = _git(clone, "branch", "--show-current")
    proc = _ship(clone, str(bogus), str(log), allow_missing_tools=False)
    missing = [name for name, path in baseline_tools().items() if path is None]
    assert proc.returncode == 2, proc.stderr
    if missing:
        assert "install the missing codec tools" in proc.stderr and "export failed" not in proc.stderr
        assert all(name in proc.stderr for name in missing), proc.stderr
    else:
        assert "export failed" in proc.stderr, proc.stderr
    assert _git(clone, "branch", "--show-current") == branch
    assert _git(clone, "status", "--porcelain") == ""


@pytest.mark.parametrize("ema", [True, False])
def test_ema_exports_the_weight_average(clone, tmp_path, ema):
    """--ema reaches the export (what `validate --ema` scored is what ships); without it, the last weights.
    A stand-in python records the export's arguments and fails it, so nothing long runs."""
    record = tmp_path / "argv"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nif [ "$2" = sicc.train ]; then echo "$@" > {record}; exit 1; fi\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    checkpoint, log = tmp_path / "checkpoint.pt", tmp_path / "log.jsonl"
    checkpoint.write_bytes(b"x")
    log.write_text("")
    env = {**os.environ, "PYTHON": str(fake), "SHIP_ALLOW_MISSING_TOOLS": "1"}
    args = ["--ema"] if ema else []
    proc = subprocess.run(["bash", "scripts/ship.sh", *args, str(checkpoint), str(log)], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "export failed" in proc.stderr, proc.stderr
    argv = record.read_text().split()
    assert argv[:4] == ["-m", "sicc.train", "export", str(checkpoint)]
    assert ("--ema" in argv) == ema
    assert _ship(clone, "--ema").returncode == 2  # --ema alone: usage


def _recording_python(tmp_path: Path) -> tuple[Path, Path]:
    """A stand-in python that records the export's arguments and fails it, so nothing long runs."""
    record = tmp_path / "argv"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nif [ "$2" = sicc.train ]; then echo "$@" > {record}; exit 1; fi\n'
                    f'exec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    return fake, record


def test_earlier_logs_join_the_history_in_run_order(clone, tmp_path):
    """--earlier-log: each earlier run's log reaches the export before the checkpoint's own, under its
    file name (the checkpoint's log under LOGNAME); two logs of one name, or a missing one, are refused
    before the export."""
    fake, record = _recording_python(tmp_path)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"x")
    logs = []
    for name in ("w1.jsonl", "w2.jsonl", "log.jsonl"):
        (tmp_path / name).write_text("")
        logs.append(str(tmp_path / name))
    env = {**os.environ, "PYTHON": str(fake), "SHIP_ALLOW_MISSING_TOOLS": "1"}

    def ship(*args):
        return subprocess.run(["bash", "scripts/ship.sh", *args], cwd=clone, env=env, capture_output=True, text=True,
                              timeout=120)

    proc = ship("--ema", "--earlier-log", logs[0], "--earlier-log", logs[1], str(checkpoint), logs[2], "w3.jsonl")
    assert proc.returncode == 2 and "export failed" in proc.stderr, proc.stderr
    argv = record.read_text().split()
    given = [Path(argv[i + 1]).name for i, a in enumerate(argv) if a == "--log"]
    assert given == ["w1.jsonl", "w2.jsonl", "w3.jsonl"] and "--ema" in argv
    record.unlink()
    proc = ship("--earlier-log", logs[0], str(checkpoint), logs[2], "w1.jsonl")
    assert proc.returncode == 2 and "two logs are named w1.jsonl" in proc.stderr and not record.exists()
    proc = ship("--earlier-log", str(tmp_path / "nope.jsonl"), str(checkpoint), logs[2])
    assert proc.returncode == 2 and "no such log" in proc.stderr and not record.exists()
    assert ship("--earlier-log").returncode == 2
