"""The JavaScript decoder (web/): its node tests (`npm test`) and, where Chromium is installed,
the page in a real headless browser (web/test/browser.mjs). Both compare with this Python
decoder; see web/README.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"


def _node_ready() -> str | None:
    """Why the node tests cannot run here, or None."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node and npm are not installed (CI installs them: apt-get install nodejs npm)"
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        return "web/node_modules is missing: run `npm ci` in web/ (CI does)"
    return None


def _env() -> dict[str, str]:
    return {**os.environ, "SICC_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}


def test_npm_test_decodes_the_golden_files_as_python_does():
    why = _node_ready()
    if why:
        pytest.skip(why)
    run = subprocess.run(["npm", "test", "--silent"], cwd=WEB, env=_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout, run.stdout[-3000:]
