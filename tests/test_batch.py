"""Batch encode and decode (issue #12): several inputs and folders, -o DIR, -r, -j N, failures
reported while the rest go on, existing outputs overwritten unless --keep."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import batch
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess, temp_files
from tests.conftest import synthetic_image


@pytest.fixture
def album(tmp_path):
    """photos/a.png, photos/b.jpg, photos/notes.txt (ignored), photos/sub/c.png, photos/.hidden/d.png."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(synthetic_image(40, 56, seed=1)).save(root / "a.png")
    Image.fromarray(synthetic_image(48, 40, seed=2)).save(root / "b.jpg", quality=95)
    Image.fromarray(synthetic_image(32, 32, seed=3)).save(root / "sub" / "c.png")
    Image.fromarray(synthetic_image(32, 32, seed=4)).save(root / ".hidden" / "d.png")
    (root / "notes.txt").write_text("not an image")
    return root


def run(*args, weights=None):
    extra = ["--weights", str(weights)] if weights else []
    return cli_inprocess([*map(str, args), *extra])


def names(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_encode_a_folder_and_files_into_a_folder(album, tmp_path, tiny_weights, tiny_codec):
    """A folder's images (not its other files, not hidden ones), -r for sub-folders mirrored
    under -o; each output is the single-file encode of its input; one total line."""
    out = tmp_path / "out"
    result = run("encode", album, "-o", out, weights=tiny_weights)
    assert result.code == 0, result.stderr
    assert names(out) == ["a.sic", "b.sic"]
    assert result.stderr_lines[-1].startswith("encoded 2 of 2 files (0 failed, 0 kept)")
    assert (out / "a.sic").read_bytes() == tiny_codec.encode(album / "a.png")
    deep = tmp_path / "deep"
    assert run("encode", album, "-o", deep, "-r", "-j", 2, "--bpp", 2.0, weights=tiny_weights).code == 0
    assert names(deep) == ["a.sic", "b.sic", "sub/c.sic"]
    assert (deep / "sub" / "c.sic").read_bytes() == tiny_codec.encode(album / "sub" / "c.png", bpp=2.0)
    files = tmp_path / "files"
    assert run("encode", album / "a.png", album / "sub" / "c.png", "-o", f"{files}/", weights=tiny_weights).code == 0
    assert names(files) == ["a.sic", "c.sic"]


def test_one_failure_is_reported_and_the_rest_go_on(album, tmp_path, tiny_weights):
    (album / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    result = run("encode", album, "-o", out, "-j", 2, weights=tiny_weights)
    assert result.code == 3  # the exit code of the failure
    errors = [line for line in result.stderr_lines if line.startswith("sicc: error:")]
    assert len(errors) == 1 and str(album / "broken.png") in errors[0]
    assert names(out) == ["a.sic", "b.sic"] and temp_files(out) == []
    assert "(1 failed" in result.stderr_lines[-1]


def test_existing_outputs_are_kept_with_keep_and_overwritten_by_default(album, tmp_path, tiny_weights):
    """One rule for one file and a folder (issue #47): overwrite, as cjxl does; --keep keeps."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.sic").write_bytes(b"mine")
    result = run("encode", album, "-o", out, "--keep", weights=tiny_weights)
    assert result.code == 0 and (out / "a.sic").read_bytes() == b"mine"
    assert any("a.sic exists, kept (--keep)" in line for line in result.stderr_lines)
    single = run("encode", album / "a.png", "-o", out / "a.sic", "-k", weights=tiny_weights)
    assert single.code == 0 and (out / "a.sic").read_bytes() == b"mine"
    assert "a.sic exists, kept (--keep)" in single.stderr
    assert run("encode", album, "-o", out, weights=tiny_weights).code == 0
    assert (out / "a.sic").read_bytes().startswith(b"\x8bSIC")
    (out / "a.sic").write_bytes(b"mine")
    assert run("encode", album / "a.png", "-o", out / "a.sic", weights=tiny_weights).code == 0
    assert (out / "a.sic").read_bytes().startswith(b"\x8bSIC")


def test_decode_a_folder_with_samples_and_format(album, tmp_path, tiny_weights, tiny_codec):
    sics = tmp_path / "sics"
    assert run("encode", album, "-o", sics, weights=tiny_weights).code == 0
    (sics / "bad.sic").write_bytes(b"\x8bSIC\r\n\x1a\n" + bytes(30))
    out = tmp_path / "pngs"
    result = run("decode", sics, "-o", out, "--samples", 2, "--level", 3, "--format", "webp", "-j", 2,
                 weights=tiny_weights)
    assert result.code == 4, result.stderr
    assert names(out) == ["a-0.webp", "a-1.webp", "b-0.webp", "b-1.webp"]
    expected = tiny_codec.decode((sics / "b.sic").read_bytes(), samples=2, level=3)
    assert np.array_equal(np.asarray(Image.open(out / "b-1.webp")), np.asarray(expected[1]))
    again = run("decode", sics / "a.sic", sics / "b.sic", "-o", out, "--samples", 2, "--level", 3, "--format",
                "webp", "--keep", weights=tiny_weights)
    assert again.code == 0 and sum("exists, kept" in line for line in again.stderr_lines) == 2


def test_batch_usage_errors(album, tmp_path, tiny_weights):
    target = tmp_path / "file.sic"
    target.write_bytes(b"x")
    assert_error(run("encode", album / "a.png", album / "b.jpg", "-o", target, weights=tiny_weights), 2,
                 "must be a folder")
    assert_error(run("encode", album / "a.png", "-", "-o", tmp_path / "o", weights=tiny_weights), 2, "'-'")
    (album / "a.jpg").write_bytes((album / "b.jpg").read_bytes())
    assert_error(run("encode", album, "-o", tmp_path / "o", weights=tiny_weights), 2, "both be written")
    assert_error(run("decode", album / "x.sic", "-o", tmp_path / "o.png", "--format", "png", weights=tiny_weights),
                 2, "--format")
    assert not (tmp_path / "o").exists()


def test_run_all_reports_in_input_order_and_threads_share_one_model(tmp_path):
    """The library part: failures classified, results in job order whatever finishes first."""
    jobs = [batch.Job(str(k), str(tmp_path / f"{k}.out")) for k in range(6)]
    seen_threads = set()

    def work(job):
        import threading
        import time

        seen_threads.add(threading.current_thread().name)
        time.sleep(0.05 * (6 - int(job.source)))
        if job.source in ("2", "4"):
            raise ValueError(f"bad {job.source}")
        return batch.Outcome(job.source, job.target)

    report = batch.run_all(jobs, work, classify=lambda exc: (str(exc), 2 + ("4" in str(exc))), parallel=3)
    assert [o.source for o in report.done] == ["0", "1", "3", "5"]
    assert [(s, m, c) for s, m, c in report.failed] == [("2", "bad 2", 2), ("4", "bad 4", 3)]
    assert report.exit_code == 2 and len(seen_threads) > 1


def test_api_and_cli_agree_without_a_terminal_progress_bar(album, tmp_path, tiny_weights):
    """Not a terminal: no progress bar characters in stderr; --quiet: nothing at all."""
    result = run("encode", album, "-o", tmp_path / "q", "-q", weights=tiny_weights)
    assert result.code == 0 and result.stderr == ""
    result = run("encode", album, "-o", tmp_path / "v", weights=tiny_weights)
    assert "\r" not in result.stderr and "file/s" not in result.stderr
    assert sicc.info((tmp_path / "v" / "a.sic").read_bytes()).width == 56
    assert os.path.isdir(tmp_path / "v")


def test_bench_times_a_batch_against_one_process_per_image(tmp_path, tiny_weights):
    """The benchmark's batch part on two small images: both ways timed, the same files, and the
    README text states the measured ratio."""
    pytest.importorskip("torch")  # the benchmark package imports the training side
    from sicc.bench.report import batch_text
    from sicc.bench.speed import SpeedSettings, sicc_batch

    images = []
    for k in range(2):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(synthetic_image(48, 64, seed=k)).save(path)
        images.append(path)
    settings = SpeedSettings(images=[], weights=tiny_weights, batch_images=images, timeout=300)
    result = sicc_batch(settings, tmp_path / "work")
    assert result["available"] and result["images"] == 2 and result["identical_outputs"], result
    assert set(result["batch_s"]) == {"1", "2"} and all(s > 0 for s in result["batch_s"].values())
    assert result["speedup"] == pytest.approx(result["separate_s"] / result["batch_s"]["2"])
    assert result["processes"] == 2 and result["processes_s"] > 0
    text = batch_text({"speed": {"sicc_batch": result}})
    assert f"{result['speedup']:.2f}x faster than 2 separate commands" in text and "identical" in text
    assert "2 `sicc encode PART -o OUT --threads 1` processes at once" in text
    assert "_Batch encoding not measured" in batch_text({"speed": {}})


def test_progress_bar_on_a_terminal(album, tmp_path, tiny_weights):
    """stderr on a terminal: a tqdm bar counts the files (and not with -q)."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    from tests.clitools import sicc_command

    outputs = {}
    for flag in ("", "-q"):
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal's size
        args = [*sicc_command(), "encode", str(album), "-o", str(tmp_path / f"out{flag}"), "--weights",
                str(tiny_weights), *([flag] if flag else [])]
        proc = subprocess.Popen(args, stderr=follower, stdout=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.wait(timeout=120) == 0
        outputs[flag] = b"".join(chunks).decode(errors="replace")
    assert "0/2" in outputs[""] and "file/s" in outputs[""], outputs[""]
    assert outputs["-q"] == ""


def test_ctrl_c_stops_a_batch_and_leaves_only_whole_files(tmp_path, tiny_weights):
    """SIGINT during `encode DIR -j 2`: exit 130, one line, no temporary file, and every output
    that exists is a whole SIC file."""
    import signal
    import subprocess
    import time

    from tests.clitools import INTERRUPTIBLE, sicc_command

    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(40):
        Image.fromarray(synthetic_image(256, 256, seed=k)).save(folder / f"p{k:02d}.png")
    out = tmp_path / "out"
    proc = subprocess.Popen([*sicc_command(), "encode", str(folder), "-o", str(out), "-j", "2", "--weights",
                             str(tiny_weights)], stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            **INTERRUPTIBLE)
    deadline = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*.sic"))) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the interrupt arrived")
    assert proc.returncode == 130 and stderr.decode().splitlines()[-1] == "sicc: error: interrupted"
    done = sorted(out.glob("*.sic"))
    assert 0 < len(done) < 40 and temp_files(out) == []
    for path in done:
        assert sicc.info(path.read_bytes()).complete, path
