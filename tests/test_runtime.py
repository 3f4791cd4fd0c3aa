"""The runtime (commands, API, Pillow plugin) runs without torch: numpy + onnxruntime only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.make_golden import DATA, SOURCE

REPO = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("torch", "torchvision", "compressai", "lpips", "onnx", "sicc.train", "sicc.bench")

CLI_THEN_CHECK = """
import sys
from sicc.cli import run
sys.argv = ["sicc", *sys.argv[1:]]
code = 0
try:
    run()
except SystemExit as exc:
    code = exc.code
loaded = [m for m in {modules!r} if m in sys.modules]
print("LOADED", loaded, file=sys.stderr)
sys.exit(code if not loaded else 99)
"""


def _run(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_commands_never_import_torch(tmp_path):
    """encode, decode (with samples), info and truncate on the shipped model: torch, compressai
    and the training/benchmark packages stay out of the process."""
    script = CLI_THEN_CHECK.format(modules=TRAINING_ONLY)
    sic = tmp_path / "a.sic"
    for args in (["encode", SOURCE, "-o", sic], ["info", sic], ["truncate", sic, "-o", tmp_path / "b.sic", "--level", 3],
                 ["decode", tmp_path / "b.sic", "-o", tmp_path / "b.png", "--samples", 2, "--threads", 2]):
        result = _run(script, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert "LOADED []" in result.stderr
    assert (tmp_path / "b-0.png").is_file() and (tmp_path / "b-1.png").is_file()


def test_api_and_pillow_plugin_never_import_torch():
    code = f"""
import sys
import sicc
from PIL import Image
data = open({str(DATA / 'golden-shipped.sic')!r}, "rb").read()
sicc.decode(data, samples=1)
Image.open({str(DATA / 'golden-shipped.sic')!r}).load()
sicc.encode({str(SOURCE)!r})
loaded = [m for m in {TRAINING_ONLY!r} if m in sys.modules]
assert not loaded, loaded
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr
