"""The ``sicc`` command: every command, its options and its error paths (issue #4).

Most cases run the console-script entry point in-process (tests/clitools.py);
the few that need a real process (pipes, Ctrl-C, the installed script) start
one. Every error must be exactly one ``sicc: error:`` line with the documented
exit code: 2 bad arguments, 3 unreadable input, 4 bad SIC data, 5 unwritable
output, 130 interrupted.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc.cli import OUTPUT_FORMATS
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import INTERRUPTIBLE, assert_error, cli_inprocess, cli_subprocess, sicc_command, temp_files
from tests.conftest import synthetic_image
from tests.fuzz import forge_header


@pytest.fixture
def files(tmp_path, small_image, small_file, tiny_weights):
    """A work folder with in.png, in.sic (the small file) and the --weights option."""
    Image.fromarray(small_image).save(tmp_path / "in.png")
    (tmp_path / "in.sic").write_bytes(small_file)

    class Files:
        dir = tmp_path
        png = tmp_path / "in.png"
        sic = tmp_path / "in.sic"
        data = small_file
        weights = ["--weights", str(tiny_weights)]

    return Files


def run(*args, input=None, cwd=None):
    return cli_inprocess(list(args), input=input, cwd=cwd)


# -- encode / decode / truncate / info ----------------------------------------------------
def test_encode_writes_the_same_bytes_as_the_api(files, tiny_codec, small_image):
    """`sicc encode` is the API's encode of the decoded input, written to the output."""
    out = files.dir / "out.sic"
    result = run("encode", files.png, "-o", out, *files.weights)
    assert result.code == 0 and len(result.stderr_lines) == 1  # the one-line summary
    assert out.read_bytes() == tiny_codec.encode(small_image)


def test_encode_levels_option(files):
    """--levels N writes exactly N levels; more than the model has is a usage error."""
    out = files.dir / "out.sic"
    assert run("encode", files.png, "-o", out, "--levels", 3, *files.weights).code == 0
    assert len(sicc.info(out.read_bytes()).levels) == 3
    assert_error(run("encode", files.png, "-o", out, "--levels", 17, *files.weights), 2, "--levels")


def test_decode_writes_the_api_decode(files, tiny_codec):
    """`sicc decode` gives the API's pixels for the same seed and spread, in the format of the suffix."""
    expected = np.asarray(tiny_codec.decode(files.data, seed=3, spread=1.5, level=5)[0])
    for name in ("out.png", "out.ppm", "out.bmp", "out.tif", "out.webp"):
        out = files.dir / name
        result = run("decode", files.sic, "-o", out, "--seed", 3, "--spread", 1.5, "--level", 5, *files.weights)
        assert result.code == 0, result.stderr
        with Image.open(out) as image:
            assert image.format == OUTPUT_FORMATS[out.suffix]
            assert np.array_equal(np.asarray(image.convert("RGB")), expected), name


def test_decode_samples_writes_numbered_files(files, tiny_codec):
    """--samples N writes out-0 .. out-{N-1} (and no plain out.png), each its own sample."""
    result = run("decode", files.sic, "-o", files.dir / "out.png", "--samples", 3, "--level", 2, *files.weights)
    assert result.code == 0, result.stderr
    names = sorted(p.name for p in files.dir.glob("out*"))
    assert names == ["out-0.png", "out-1.png", "out-2.png"]
    expected = tiny_codec.decode(files.data, samples=3, level=2)
    pixels = [np.asarray(Image.open(files.dir / f"out-{k}.png")) for k in range(3)]
    for got, want in zip(pixels, expected):
        assert np.array_equal(got, np.asarray(want))
    assert not np.array_equal(pixels[0], pixels[1])


def test_decode_several_samples_cannot_go_to_stdout(files):
    assert_error(run("decode", files.sic, "-o", "-", "--samples", 2, *files.weights), 2, "standard output")


def test_truncate_level_bytes_bpp_are_byte_prefixes(files):
    """truncate --level/--bytes/--bpp: the output is a byte prefix of the input (`cmp` property)
    and the longest level prefix that fits the budget."""
    info = sicc.info(files.data)
    ends = [info.base_bytes] + [lv.cumulative_bytes for lv in info.levels]
    pixels = info.width * info.height
    out = files.dir / "cut.sic"
    cases = [("--level", 4, ends[4]), ("--bytes", ends[6] + 3, ends[6]), ("--bytes", ends[6], ends[6]),
             ("--bpp", ends[9] * 8 / pixels + 1e-6, ends[9]), ("--level", 1, ends[1]),
             ("--bytes", 10**9, len(files.data))]
    for option, value, expected_length in cases:
        result = run("truncate", files.sic, "-o", out, option, value)
        assert result.code == 0, (option, value, result.stderr)
        cut = out.read_bytes()
        assert len(cut) == expected_length, (option, value)
        assert files.data[: len(cut)] == cut, "not a byte prefix"


def test_truncate_argument_errors(files):
    """Exactly one of --level/--bytes/--bpp; budgets below the base or levels not in the file fail with 2."""
    out = files.dir / "cut.sic"
    base = sicc.info(files.data).base_bytes
    ends1 = sicc.info(files.data).levels[0].cumulative_bytes
    assert_error(run("truncate", files.sic, "-o", out), 2, "exactly one")
    assert_error(run("truncate", files.sic, "-o", out, "--level", 2, "--bytes", 500), 2, "exactly one")
    assert_error(run("truncate", files.sic, "-o", out, "--bytes", base - 1), 2, f"{ends1} bytes")
    assert_error(run("truncate", files.sic, "-o", out, "--bytes", ends1 - 1), 2, "smallest file with level 1",
                 f"is {ends1} bytes")
    assert_error(run("truncate", files.sic, "-o", out, "--level", 0), 2, "1<=x<=16")
    assert_error(run("truncate", files.sic, "-o", out, "--level", 17), 2, "1<=x<=16")
    assert_error(run("truncate", files.dir / "two.sic", "-o", out, "--level", 3), 3, "two.sic")
    (files.dir / "two.sic").write_bytes(sicc.truncate(files.data, level=2))
    assert_error(run("truncate", files.dir / "two.sic", "-o", out, "--level", 3), 2, "levels 1..2")
    assert not out.exists()


def test_info_json_sums_to_the_file_size(files):
    """info --json: base bytes + the bytes of every level = the file size; each cumulative figure adds up."""
    cut = sicc.truncate(files.data, level=7)
    path = files.dir / "cut.sic"
    path.write_bytes(cut + files.data[len(cut) : len(cut) + 5])  # cut inside level 8
    for source, size, complete, truncated in ((files.sic, len(files.data), True, False),
                                              (path, len(cut) + 5, False, True)):
        result = run("info", source, "--json")
        assert result.code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["file_bytes"] == size and report["complete"] is complete and report["truncated"] is truncated
        total = report["base_bytes"]
        for lv in report["levels"]:
            total += lv["bytes"]
            assert lv["cumulative_bytes"] == total
        assert total == (size if complete else len(cut))
        assert (report["width"], report["height"]) == (100, 72)


def test_info_text(files):
    result = run("info", files.sic)
    assert result.code == 0
    text = result.stdout.decode()
    assert "100x72" in text and "16/16 levels" in text and f"{len(files.data)} bytes" in text
    assert text.count("level ") == 16


def test_quiet_verbose_threads(files):
    """-v prints a size/timing line, -q silences warnings; --threads is accepted before and after the command."""
    cut = files.dir / "cut.sic"
    cut.write_bytes(files.data[:-3])  # cut inside level 16: a warning
    out = files.dir / "out.png"
    loud = run("decode", cut, "-o", out, *files.weights)
    assert loud.code == 0 and loud.stderr_lines[0] == (
        f"sicc: warning: {cut}: file is truncated inside level 16; decoding the 15 complete levels")
    assert len(loud.stderr_lines) == 2 and loud.stderr_lines[1].startswith(f"{out}: 100x72 from 15/16 levels")
    quiet = run("decode", cut, "-o", out, "-q", *files.weights)
    assert quiet.code == 0 and quiet.stderr == ""
    verbose = run("-v", "decode", files.sic, "-o", out, "--threads", 2, *files.weights)
    assert verbose.code == 0 and verbose.stderr_lines[-1].startswith(f"{out}: 100x72 from 16/16 levels")
    assert verbose.stderr_lines[0].startswith("model ")  # -v: the model
    verbose = run("--threads", 1, "encode", files.png, "-o", files.dir / "x.sic", "-v", *files.weights)
    assert verbose.code == 0 and "bpp" in verbose.stderr
    assert_error(run("decode", files.sic, "-o", out, "--threads", 0, *files.weights), 2, "--threads")


# -- exit codes ---------------------------------------------------------------------------
def test_usage_errors_exit_2_in_one_line(files):
    """Click's own usage errors are one line too, with where to find help."""
    out = files.dir / "out.png"
    assert_error(run("decode", files.sic, *files.weights), 2, "Missing option", "sicc decode --help")
    assert_error(run("decode", files.sic, "-o", out, "--bogus"), 2, "--bogus")
    assert_error(run("decode", files.sic, "-o", out, "--samples", 0), 2, "--samples")
    assert_error(run("decode", files.sic, "-o", out, "--spread", 17), 2, "--spread")
    assert_error(run("decode", files.sic, "-o", out, "--level", 3, "--max-pixels", 0), 2, "--max-pixels")
    assert_error(run("decode", files.sic, "-o", files.dir / "out.gif", *files.weights), 2, "'.gif'")
    assert_error(run("frobnicate"), 2, "frobnicate")
    cut = files.dir / "cut.sic"
    cut.write_bytes(sicc.truncate(files.data, level=2))
    assert_error(run("decode", cut, "-o", out, "--level", 3, *files.weights), 2, "level 3")
    assert not out.exists()


def test_unreadable_input_exits_3(files):
    missing = files.dir / "missing.sic"
    assert_error(run("decode", missing, "-o", files.dir / "o.png", *files.weights), 3, str(missing))
    assert_error(run("info", files.dir), 3, "cannot read")
    assert_error(run("truncate", missing, "-o", files.dir / "o.sic", "--level", 1), 3, "cannot read")
    text = files.dir / "notes.txt"
    text.write_text("hello")
    assert_error(run("encode", text, "-o", files.dir / "o.sic", *files.weights), 3, "not a readable image")


def test_bad_sic_data_exits_4(files, monkeypatch):
    """Not SIC, truncated, corrupt under --strict, over the pixel limit, another model: exit 4."""
    out = files.dir / "out.png"
    bad = files.dir / "bad.sic"
    cases = [
        (files.png.read_bytes(), [], "not a SIC file"),
        (b"", [], "empty"),
        (files.data[:20], [], "truncated"),
        (files.data[:40], [], "truncated"),
        (forge_header(files.data, width=1 << 20, height=1 << 20), [], "--max-pixels"),
        (files.data, ["--max-pixels", 7199], "over the limit of 7199"),
        (forge_header(files.data, model_id=12345), [], "encoded with model"),
        (forge_header(files.data, version=2), [], "version 2"),
        (files.data[:-3], ["--strict"], "truncated inside level 16"),
    ]
    corrupt = bytearray(files.data)
    corrupt[sicc.info(files.data).levels[6].cumulative_bytes - 6] ^= 0x10  # inside level 7
    cases.append((bytes(corrupt), ["--strict"], "level 7 is corrupt"))
    for data, options, fragment in cases:
        bad.write_bytes(data)
        assert_error(run("decode", bad, "-o", out, *options, *files.weights), 4, fragment)
        assert not out.exists()
    bad.write_bytes(b"\x89PNG not at all")
    assert_error(run("info", bad), 4, "not a SIC file")
    assert_error(run("truncate", bad, "-o", files.dir / "c.sic", "--level", 1), 4, "not a SIC file")


def test_chunk_type_with_control_characters_stays_one_line(files):
    """A forged chunk type holding a newline and an escape sequence must not break the one-line
    error (regression: the type went into the message verbatim)."""
    bad = bytearray(files.data[:46])
    bad[32:36] = b"\n\x1b[H"
    (files.dir / "bad.sic").write_bytes(bytes(bad))
    line = assert_error(run("info", files.dir / "bad.sic"), 4, "truncated")
    assert "\x1b" not in line


def test_missing_weights_cannot_be_read(files):
    assert_error(run("decode", files.sic, "-o", files.dir / "o.png", "--weights", files.dir / "nope.npz"),
                 3, "cannot read model weights")


def test_damaged_weights_give_one_line_and_exit_4(files, tiny_weights):
    """Issue 13.6: a cut, bit-flipped, foreign or pickled weights file is named in one line with
    exit 4, never a library's raw message or exit 1; nothing is written."""
    import pickle
    import zipfile

    whole = tiny_weights.read_bytes()
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0x40
    pickled = files.dir / "pickled.npz"
    with zipfile.ZipFile(pickled, "w") as archive:
        archive.writestr("manifest.npy", pickle.dumps({"format": "sicc-weights-2"}))
    cases = {"cut.npz": whole[: len(whole) // 3], "flipped.npz": bytes(flipped), "text.npz": b"hello\n",
             "empty.npz": b""}
    for name, data in cases.items():
        (files.dir / name).write_bytes(data)
    for name in [*cases, pickled.name]:
        out = files.dir / f"{name}.png"
        assert_error(run("decode", files.sic, "-o", out, "--weights", files.dir / name), 4, "invalid model weights")
        assert not out.exists()


def test_unwritable_output_exits_5_and_leaves_no_temp_file(files):
    """A missing folder, a path through a file, an existing folder as the target: exit 5, nothing left."""
    (files.dir / "taken.png").mkdir()
    targets = [files.dir / "no" / "such" / "dir" / "out.png", files.dir / "in.png" / "out.png",
               files.dir / "taken.png"]
    for target in targets:
        assert_error(run("decode", files.sic, "-o", target, *files.weights), 5, "cannot write")
    assert_error(run("truncate", files.sic, "-o", files.dir / "taken.png", "--level", 1), 5, "cannot write")
    assert temp_files(files.dir) == [] and temp_files(files.dir / "taken.png") == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_exits_5(files, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert_error(run("decode", files.sic, "-o", folder / "out.png", *files.weights), 5, "cannot write")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_failed_rename_removes_the_temp_file_and_keeps_the_old_output(files, monkeypatch):
    """A failure after the temporary file is written leaves the previous output untouched."""
    out = files.dir / "out.png"
    out.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    assert_error(run("decode", files.sic, "-o", out, *files.weights), 5, "No space left")
    assert out.read_bytes() == b"previous"
    assert temp_files(files.dir) == []


def test_samples_are_written_all_or_nothing(files):
    """--samples 3 where out-1.png cannot be written (a folder is in the way): exit 5 and no
    out-0.png or out-2.png left behind (they used to be), nor any temporary file."""
    (files.dir / "out-1.png").mkdir()
    result = run("decode", files.sic, "-o", files.dir / "out.png", "--samples", 3, "--level", 2, *files.weights)
    assert_error(result, 5, "out-1.png")
    assert sorted(p.name for p in files.dir.glob("out*")) == ["out-1.png"]
    assert temp_files(files.dir) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_outputs_get_ordinary_permissions(files):
    """New outputs get 0666 less the umask, like any program's (not mkstemp's 0600); a replaced
    file keeps its own permissions."""
    old_umask = os.umask(0o022)
    try:
        out = files.dir / "cut.sic"
        assert run("truncate", files.sic, "-o", out, "--level", 1).code == 0
        assert out.stat().st_mode & 0o777 == 0o644
        out.chmod(0o640)
        assert run("truncate", files.sic, "-o", out, "--level", 2).code == 0
        assert out.stat().st_mode & 0o777 == 0o640
        assert run("decode", files.sic, "-o", files.dir / "o.png", "--samples", 2, "--level", 1,
                   *files.weights).code == 0
        assert {(files.dir / f"o-{k}.png").stat().st_mode & 0o777 for k in range(2)} == {0o644}
    finally:
        os.umask(old_umask)


def test_refuses_to_overwrite_the_input(files):
    """The output naming the input (even through another path or a hard link) is refused with exit 2."""
    before = files.data
    assert_error(run("truncate", files.sic, "-o", files.sic, "--level", 1), 2, "refusing to overwrite")
    assert_error(run("truncate", files.sic, "-o", files.dir / "." / ".." / files.dir.name / "in.sic",
                     "--level", 1), 2, "refusing")
    os.link(files.sic, files.dir / "alias.sic")
    assert_error(run("truncate", files.sic, "-o", files.dir / "alias.sic", "--level", 1), 2, "refusing")
    png = files.png.read_bytes()
    assert_error(run("encode", files.png, "-o", files.png, *files.weights), 2, "refusing")
    assert files.sic.read_bytes() == before and files.png.read_bytes() == png


def test_stdin_and_stdout_inprocess(files, tiny_codec):
    """'-' reads standard input and writes standard output (PNG for decode)."""
    encoded = run("encode", "-", "-o", "-", *files.weights, input=files.png.read_bytes())
    assert encoded.code == 0 and encoded.stdout == files.data
    cut = run("truncate", "-", "-o", "-", "--level", 2, input=files.data)
    assert cut.code == 0 and cut.stdout == sicc.truncate(files.data, level=2)
    decoded = run("decode", "-", "-o", "-", "--spread", 0, *files.weights, input=cut.stdout)
    assert decoded.code == 0
    image = Image.open(io.BytesIO(decoded.stdout))
    assert image.format == "PNG"
    assert np.array_equal(np.asarray(image), np.asarray(tiny_codec.decode(cut.stdout, spread=0)[0]))


# -- real processes -------------------------------------------------------------------------
def test_pipeline_through_real_pipes(tiny_codec, tiny_weights):
    """encode - | truncate - | decode - as separate processes, as in a shell pipeline. The image
    needs no padding (128x64), the case where a read-only pixel array reached torch, which warned."""
    pixels = synthetic_image(64, 128, seed=8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, "PNG")
    weights = ["--weights", str(tiny_weights)]
    encoded = cli_subprocess(["encode", "-", "-o", "-", *weights], input=png.getvalue())
    assert encoded.code == 0 and encoded.stdout == tiny_codec.encode(pixels), encoded.stderr
    # a fresh process: no library warning (torch, numpy) reaches the user, only the summary line
    size = len(encoded.stdout)
    assert re.fullmatch(rf"standard output: 128x64, {size} bytes, {size * 8 / (128 * 64):.4f} bpp, "
                        r"16/16 levels, \d+\.\d\d s\n", encoded.stderr), encoded.stderr
    cut = cli_subprocess(["truncate", "-", "-o", "-", "--bpp", 0.25], input=encoded.stdout)
    assert cut.code == 0 and encoded.stdout.startswith(cut.stdout)
    assert len(cut.stdout) * 8 <= 0.25 * 128 * 64 < len(encoded.stdout) * 8
    decoded = cli_subprocess(["decode", "-", "-o", "-", "--seed", 4, *weights], input=cut.stdout)
    assert decoded.code == 0 and re.fullmatch(r"standard output: 128x64 from \d+/16 levels \(\d\.\d{4} bpp\), "
                                              r"\d+\.\d\d s\n", decoded.stderr), decoded.stderr
    assert Image.open(io.BytesIO(decoded.stdout)).size == (128, 64)


def test_console_script_errors_are_one_line(files):
    """The installed `sicc` script: a usage error and a data error, each one line, right code."""
    script = shutil.which("sicc")
    if script is None:
        pytest.skip("sicc console script not installed")
    usage = subprocess.run([script, "decode", str(files.sic)], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    assert usage.stderr.startswith("sicc: error: Missing option")
    data = subprocess.run([script, "info", str(files.png)], capture_output=True, text=True, timeout=120)
    # (the script may run another checkout of sicc, whose message wording can differ)
    assert data.returncode == 4 and data.stderr.count("\n") == 1 and "not a SIC file" in data.stderr


def test_full_stdout_exits_5(files, tiny_weights):
    """Writing to a full device (stdout = /dev/full) is a write error: exit 5, one line, for the
    image of decode and for the text of info (which click alone turned into a silent exit 1)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    for args in (["decode", str(files.sic), "-o", "-", "--weights", str(tiny_weights)],
                 ["info", str(files.sic), "--json"]):
        with open("/dev/full", "wb") as full:
            proc = subprocess.run([*sicc_command(), *args], stdout=full, stderr=subprocess.PIPE, timeout=120)
        stderr = proc.stderr.decode()
        assert proc.returncode == 5, (args, stderr)
        assert stderr.count("\n") == 1 and stderr.startswith("sicc: error: cannot write to standard output")


def test_internal_errors_are_one_line_with_exit_1(files, monkeypatch):
    """An unforeseen exception (here a multi-line one from deep inside) is still one line, exit 1."""
    from sicc.codec import Codec

    def broken(self, *args, **kwargs):
        raise RuntimeError("something deep\nwent wrong")

    monkeypatch.setattr(Codec, "decode_iter", broken)
    assert_error(run("decode", files.sic, "-o", files.dir / "o.png", *files.weights), 1,
                 "internal error: RuntimeError: something deep went wrong")


def test_file_size_limit_mid_write_leaves_nothing(files, tiny_weights):
    """The write itself failing half-way (RLIMIT_FSIZE: EFBIG) leaves neither a partial output
    nor a temporary file."""
    resource = pytest.importorskip("resource")
    out = files.dir / "out.png"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    result = cli_subprocess(["decode", files.sic, "-o", out, "--weights", tiny_weights], preexec_fn=limit)
    assert_error(result, 5, "cannot write")
    assert not out.exists() and temp_files(files.dir) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc")
def test_ctrl_c_leaves_no_output_and_exits_130(tmp_path, tiny_codec, tiny_weights):
    """SIGINT in the middle of a long decode: exit 130, one line, no output and no temporary file."""
    sic = tmp_path / "big.sic"
    sic.write_bytes(tiny_codec.encode(synthetic_image(512, 512, seed=5), levels=1))
    out = tmp_path / "out.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*sicc_command(), "decode", str(sic), "-o", str(out), "--samples", "1024",
                             "--weights", str(tiny_weights)], stderr=subprocess.PIPE, env=env, **INTERRUPTIBLE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the decoder's modules are loaded: decoding is about to start
            assert proc.poll() is None, proc.stderr.read()
            if "constriction" in Path(f"/proc/{proc.pid}/maps").read_text():
                break
            time.sleep(0.1)
        time.sleep(2.0)  # well inside the 1024 decodes (tens of seconds)
        assert proc.poll() is None, "decode finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.decode() == "sicc: error: interrupted\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.sic"]
