"""The README's code runs as written (issue #47): every ```python block, and the `sicc` lines of
the first command block and of the install block, in a temporary folder holding
examples/kodim23.png as photo.png, with the shipped model."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clitools import REPO, cli_inprocess
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)

README = (REPO / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def sicc_commands(block: str) -> list[list[str]]:
    """The `$ sicc ...` lines of a console block, comments dropped and `&&` chains split."""
    commands = []
    for line in block.splitlines():
        if not line.startswith("$ sicc "):
            continue
        text = line[2:].split(" # ", 1)[0].split("  #", 1)[0]
        for part in text.split("&&"):
            commands.append(shlex.split(part))
    return commands


@pytest.fixture
def folder(tmp_path) -> Path:
    shutil.copyfile(REPO / "examples" / "kodim23.png", tmp_path / "photo.png")
    return tmp_path


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_blocks_run(folder, index):
    code = blocks("python")[index]
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"README python block {index}:\n{code}\n{proc.stderr[-2000:]}"


def test_the_readme_has_python_and_command_blocks():
    assert blocks("python") and len(sicc_commands(blocks("console")[0])) >= 5


def test_the_first_command_block_runs(folder):
    """The overview's commands, in order (the folder line over ~/Pictures is left out)."""
    for command in sicc_commands(blocks("console")[0]):
        if any("~" in arg for arg in command):
            continue
        result = cli_inprocess(command[1:], cwd=folder)
        assert result.code == 0, (command, result.stderr)
    assert sorted(p.name for p in folder.glob("out-*.png")) == [f"out-{k}.png" for k in range(4)]


def test_the_install_block_runs_and_writes_outside_the_clone(tmp_path):
    """The quick start writes to /tmp (here: a test folder), never into the clone."""
    install = next(block for block in blocks("console") if "pip install" in block)
    commands = sicc_commands(install)
    assert commands and all(not arg.startswith(("a.", "./a.")) for command in commands for arg in command)
    for command in commands:
        args = [arg.replace("/tmp/", f"{tmp_path}/") for arg in command[1:]]
        result = cli_inprocess(args, cwd=REPO)
        assert result.code == 0, (command, result.stderr)
    assert (tmp_path / "a.png").exists()
