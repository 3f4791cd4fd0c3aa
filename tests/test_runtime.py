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


def test_cheap_checks_come_before_the_model(tmp_path):
    """A bad input, a missing output folder or a too-large file is reported as such even when the
    weights file does not exist: none of them waited for a model to load."""
    from tests.clitools import assert_error, cli_inprocess

    missing_weights = ["--weights", tmp_path / "absent.npz"]
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    sic = DATA / "golden-shipped.sic"
    cases = [
        (["encode", text, "-o", tmp_path / "a.sic"], 3, "not a readable image"),
        (["encode", SOURCE, "-o", tmp_path / "nowhere" / "a.sic"], 5, "cannot write"),
        (["encode", SOURCE, "-o", tmp_path / "a.sic", "--max-pixels", 100], 3, "too large"),
        (["decode", text, "-o", tmp_path / "a.png"], 4, ""),
        (["decode", sic, "-o", tmp_path / "nowhere" / "a.png", "--samples", 2], 5, "cannot write"),
        (["decode", sic, "-o", tmp_path / "a.png", "--max-pixels", 100], 4, "too large"),
    ]
    for args, code, fragment in cases:
        assert_error(cli_inprocess([*args, *missing_weights]), code, fragment)
    assert list(tmp_path.iterdir()) == [text]


def test_progress_shows_on_a_terminal_only(tmp_path):
    """Long decodes show progress when stderr is a terminal (and not --quiet); the line is erased
    at the end, before the one-line summary. Piped stderr gets no progress, only the summary."""
    import os
    import pty

    args = [sys.executable, "-m", "sicc.cli", "decode", DATA / "golden-shipped.sic", "-o"]
    primary, secondary = pty.openpty()
    try:
        done = subprocess.run([*map(str, args), str(tmp_path / "t.png")], cwd=REPO, stderr=secondary,
                              stdout=subprocess.PIPE, timeout=120)
        os.close(secondary)
        shown = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(primary)
    assert done.returncode == 0
    assert b"sicc: levels 16/16" in shown and b"sicc: synthesis 1/1" in shown
    progress, _, summary = shown.rpartition(b"\r\x1b[K")  # the progress line erased, then the summary alone
    assert progress and summary.startswith(str(tmp_path / "t.png").encode()) and summary.endswith(b" s\r\n")
    quiet = subprocess.run([*map(str, args), str(tmp_path / "q.png")], cwd=REPO, capture_output=True, timeout=120)
    assert quiet.returncode == 0 and b"\r" not in quiet.stderr and b"sicc: levels" not in quiet.stderr
    assert quiet.stderr.decode().startswith(f"{tmp_path / 'q.png'}: ") and quiet.stderr.count(b"\n") == 1
