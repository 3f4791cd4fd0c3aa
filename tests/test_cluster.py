"""``sicc cluster`` on a real Ray (issue #46): a job of 30 small images with 2 corrupt ones gives the
batch command's files byte for byte and a results table that names the corrupt ones; a rerun
writes nothing (and redoes only a missing or damaged output); an actor killed mid-job is
restarted and the job completes; decode; the command with the local Ray it starts itself.

One local Ray (2 CPUs) serves the module; the tiny model keeps each file at milliseconds.
The simulated two-node cluster is ``tests/test_cluster_nodes.py``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.clitools import INTERRUPTIBLE, cli_inprocess, cli_subprocess, temp_files
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.conftest import synthetic_image

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (CI installs it)")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed: pip install -e '.[ray]'")

from sicc import cluster  # noqa: E402

CORRUPT = ("broken.png", "sub/notes.jpg")


def make_album(root: Path) -> Path:
    """30 images in root/ and root/sub/ (PNG, JPEG, WebP; sizes 24..88 px), 2 of them corrupt: a
    PNG cut after its signature and a text file named .jpg."""
    (root / "sub").mkdir(parents=True)
    for k in range(28):
        folder = root / "sub" if k % 4 == 0 else root
        image = Image.fromarray(synthetic_image(24 + (k % 5) * 16, 88 - (k % 4) * 16, seed=k))
        suffix = (".png", ".jpg", ".webp")[k % 3]
        image.save(folder / f"img{k:02d}{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
    (root / CORRUPT[0]).write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
    (root / CORRUPT[1]).write_text("not an image at all")
    return root


def names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def table(path) -> list[dict]:
    return pq.read_table(str(path)).to_pylist()


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Inode and modification time of every file: a rewrite (a rename onto it) changes both."""
    return {name: (os.stat(folder / name).st_ino, os.stat(folder / name).st_mtime_ns) for name in names(folder)}


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (start-up costs seconds), shut down afterwards."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def album(tmp_path_factory) -> Path:
    return make_album(tmp_path_factory.mktemp("album") / "photos")


@pytest.fixture(scope="module")
def reference(album, tiny_weights, tmp_path_factory) -> Path:
    """What the batch command writes: ``sicc encode -r album -o ref --bpp 1.5 -j 2``."""
    out = tmp_path_factory.mktemp("ref") / "sics"
    result = cli_inprocess(["encode", album, "-r", "-o", out, "--bpp", "1.5", "-j", "2", "--weights", tiny_weights])
    assert result.code == 3, result.stderr  # the two corrupt files: exit 3, the rest written
    assert len(names(out)) == 28
    return out


@pytest.fixture(scope="module")
def first_job(ray_local, album, tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("job") / "sics"
    report = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights), actors=2)
    return out, report


def assert_same_files(out: Path, reference: Path) -> None:
    assert names(out) == sorted([*names(reference), "results.parquet"])
    for name in names(reference):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    for folder in (out, out / "sub"):
        assert temp_files(folder) == []


def test_a_job_writes_the_batch_commands_bytes_and_names_the_corrupt_files(first_job, reference, album):
    out, report = first_job
    assert (report.total, report.done, report.failed, report.skipped) == (30, 28, 2, 0)
    assert report.exit_code == 3  # cannot read input, as the batch command says
    assert_same_files(out, reference)
    rows = table(out / "results.parquet")
    assert len(rows) == 30 and len({row["path"] for row in rows}) == 30
    failed = sorted(row["path"] for row in rows if row["status"] == "failed")
    assert failed == sorted(str(album / name) for name in CORRUPT)
    for row in rows:
        if row["status"] == "failed":
            assert row["exit_code"] == 3 and row["path"] in row["error"] and "not a readable image" in row["error"]
            assert row["bytes"] == 0 and not os.path.exists(row["output"])
        else:
            data = Path(row["output"]).read_bytes()
            info = __import__("sicc").info(data)
            assert row["error"] is None and row["exit_code"] == 0
            assert row["bytes"] == len(data) and row["levels"] == len(info.levels) >= 1
            assert row["bpp"] == pytest.approx(len(data) * 8 / (info.width * info.height))
            assert row["model_id"] == info.model_id and row["seconds"] > 0


def test_a_rerun_writes_nothing_and_redoes_only_missing_or_damaged_outputs(first_job, reference, album,
                                                                             tiny_weights):
    out, _ = first_job
    before = stamps(out)
    report = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights), actors=2)
    assert (report.done, report.skipped, report.failed) == (0, 28, 2)  # the corrupt ones are tried again
    after = stamps(out)
    assert {k: v for k, v in after.items() if k != "results.parquet"} == \
           {k: v for k, v in before.items() if k != "results.parquet"}
    rows = {row["path"]: row for row in table(out / "results.parquet")}
    kept = rows[str(album / "img01.jpg")]
    assert kept["status"] == "skipped" and kept["bytes"] == (out / "img01.sic").stat().st_size

    (out / "img01.sic").unlink()  # lost
    damaged = bytearray((out / "sub" / "img04.sic").read_bytes())
    damaged[-3] ^= 0x10  # a flipped bit in the last level: its CRC fails
    (out / "sub" / "img04.sic").write_bytes(bytes(damaged))
    before = stamps(out)
    report = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights), actors=2)
    assert (report.done, report.skipped, report.failed) == (2, 26, 2)
    after = stamps(out)
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == ["img01.sic", "results.parquet", "sub/img04.sic"]
    assert_same_files(out, reference)


@ray.remote
class Registry:
    """Counts worker starts and kills the first worker that asks, while it holds a batch."""

    def __init__(self):
        self.starts = 0
        self.kills = 0

    def started(self) -> int:
        self.starts += 1
        return self.starts

    def kill(self, handle) -> None:
        self.kills += 1
        ray.kill(handle, no_restart=False)  # the process dies; Ray restarts the actor

    def counts(self) -> tuple[int, int]:
        return self.starts, self.kills


class KilledOnce(cluster.Worker):
    """The job's worker; the first one started is killed by ray.kill in its first call."""

    def __init__(self, job):
        super().__init__(job)
        self.registry = ray.get_actor("sicc-test-registry")
        self.doomed = ray.get(self.registry.started.remote()) == 1

    def __call__(self, rows):
        if self.doomed:
            ray.get(self.registry.kill.remote(ray.get_runtime_context().current_actor))
            time.sleep(60)  # the kill arrives while this call holds its file
        return super().__call__(rows)


def test_a_killed_actor_is_restarted_and_the_job_completes(ray_local, album, reference, tiny_weights, tmp_path):
    registry = Registry.options(name="sicc-test-registry").remote()
    try:
        out = tmp_path / "sics"
        report = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights),
                                actors=2, worker_class=KilledOnce)
        starts, kills = ray.get(registry.counts.remote())
    finally:
        ray.kill(registry)
    assert kills == 1 and starts >= 3  # two workers, then the killed one again
    assert (report.done, report.failed, report.skipped) == (28, 2, 0)
    rows = table(out / "results.parquet")
    assert len(rows) == 30 and len({row["path"] for row in rows}) == 30  # nothing lost, nothing twice
    assert_same_files(out, reference)


class DiesOnOneFile(cluster.Worker):
    """A worker whose process exits whenever it is handed img05 (a file that crashes its worker)."""

    def __call__(self, rows):
        if any(str(path).endswith("img05.webp") for path in rows["path"]):
            os._exit(1)
        return super().__call__(rows)


def test_a_file_that_keeps_killing_its_worker_is_recorded_and_a_rerun_finishes(ray_local, album, reference,
                                                                              tiny_weights, tmp_path,
                                                                              monkeypatch):
    """After its retries Ray gives up: every input still has its row (the files without a result
    are 'not processed', exit 1), and the rerun of the same job with sound workers does the rest."""
    monkeypatch.setattr(cluster, "TASK_RETRIES", 1)  # each retry restarts a worker: seconds
    out = tmp_path / "sics"
    report = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights), actors=2,
                            worker_class=DiesOnOneFile)
    rows = table(out / "results.parquet")
    assert len(rows) == 30 and len({row["path"] for row in rows}) == 30
    poisoned = next(row for row in rows if row["path"].endswith("img05.webp"))
    assert poisoned["status"] == "failed" and poisoned["exit_code"] == 1 and "not processed" in poisoned["error"]
    done = [row for row in rows if row["status"] == "done"]
    assert report.done == len(done) and report.failed == 30 - len(done) and report.exit_code in (1, 3)
    for row in rows:
        assert row["status"] == "done" or "not processed" in row["error"] or row["exit_code"] == 3
    again = cluster.encode([str(album)], str(out), recursive=True, bpp=1.5, weights=str(tiny_weights), actors=2)
    # a file whose output was written but whose row never came back is skipped, not redone
    assert again.failed == 2 and again.done + again.skipped == 28 and again.skipped >= len(done)
    assert_same_files(out, reference)


def test_decode_job_writes_the_batch_commands_images(ray_local, reference, tiny_weights, tmp_path):
    expected = tmp_path / "expected"
    result = cli_inprocess(["decode", reference, "-r", "-o", expected, "--samples", "2", "--seed", "5",
                            "--format", "webp", "--weights", tiny_weights])
    assert result.code == 0, result.stderr
    out = tmp_path / "images"
    report = cluster.decode([str(reference)], str(out), recursive=True, samples=2, seed=5, format="webp",
                            weights=str(tiny_weights), actors=2)
    assert (report.done, report.failed, report.exit_code) == (28, 0, 0)
    assert names(out) == sorted([*names(expected), "results.parquet"])
    for name in names(expected):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    again = cluster.decode([str(reference)], str(out), recursive=True, samples=2, seed=5, format="webp",
                           weights=str(tiny_weights), actors=2)
    assert (again.done, again.skipped) == (0, 28)


def test_globs_lists_and_file_uris_name_the_same_jobs(ray_local, album, reference, tiny_weights, tmp_path):
    out = tmp_path / "sics"
    report = cluster.encode([f"{album}/img0*.png", f"file://{album}/sub/img04.jpg", str(album / "missing.png")],
                            str(out), bpp=1.5, weights=str(tiny_weights), actors=1,
                            results=str(tmp_path / "table.parquet"))
    assert names(out) == ["img03.sic", "img04.sic", "img06.sic", "img09.sic"]  # named files: flat, as in the CLI
    rows = {Path(row["path"]).name: row for row in table(tmp_path / "table.parquet")}
    assert rows["missing.png"]["status"] == "failed" and rows["missing.png"]["exit_code"] == 3
    assert "No such file" in rows["missing.png"]["error"]
    done = sorted(name for name, row in rows.items() if row["status"] == "done")
    assert done == ["img03.png", "img04.jpg", "img06.png", "img09.png"]
    for name in done:
        target = Path(name).stem + ".sic"
        source = reference / target if (reference / target).exists() else reference / "sub" / target
        assert (out / target).read_bytes() == source.read_bytes()
    assert report.exit_code == 3


def test_the_command_starts_its_own_ray_and_reports_like_the_batch_command(album, reference, tiny_weights,
                                                                             tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for name in ("img01.jpg", "img02.webp", "broken.png"):
        shutil.copy(album / name, small / name)
    out = tmp_path / "sics"
    env_address = os.environ.pop("RAY_ADDRESS", None)  # the command must start its own
    try:
        result = cli_subprocess(["cluster", "encode", small, "-o", out, "--bpp", "1.5", "--weights", tiny_weights],
                                timeout=300)
    finally:
        if env_address is not None:
            os.environ["RAY_ADDRESS"] = env_address
    assert result.code == 3, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr_lines if line.startswith("sicc: error:")]
    assert len(errors) == 1 and str(small / "broken.png") in errors[0] and "results.parquet" in errors[0]
    assert result.stderr_lines[-1].startswith("encoded 2 of 3 files (1 failed, 0 skipped)")
    assert names(out) == ["img01.sic", "img02.sic", "results.parquet"]
    for name in ("img01.sic", "img02.sic"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


def processes_in_session(sid: int) -> list[str]:
    """Processes of the session ``sid`` (a child started with start_new_session: it and whatever
    it spawned, Ray's processes included, unless they left the session)."""
    import subprocess

    listing = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.split(None, 1)[0] == str(sid)]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_job_and_the_ray_it_started(album, tiny_weights, tmp_path, signal_name):
    """A killed or interrupted command exits 130 with one line, leaves no results table or
    temporary file, and shuts down the local Ray it had started (no process of it is left)."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "sics"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SICC_WEIGHTS")}
    proc = subprocess.Popen([sys.executable, "-m", "sicc.cli", "cluster", "encode", str(album), "-r", "-o", str(out),
                             "--weights", str(tiny_weights)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, start_new_session=True, **INTERRUPTIBLE)
    try:
        deadline = time.monotonic() + 240
        while not list(out.rglob("*.sic")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # the job is running: its first files are written
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = stderr.decode().splitlines()
    assert proc.returncode == 130, lines
    assert [line for line in lines if line.startswith("sicc:")] == ["sicc: error: interrupted"]
    assert "Traceback" not in stderr.decode()
    assert not (out / "results.parquet").exists()
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp")] == []
    deadline = time.monotonic() + 30
    while processes_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_in_session(proc.pid) == []
    for sic in out.rglob("*.sic"):  # what was written before the signal is whole
        __import__("sicc").info(sic.read_bytes())


STALLS_MID_WRITE = """
import sys, time
from pathlib import Path
from sicc import cluster, fileio

class StallsMidWrite(cluster.Worker):
    # stages its outputs as the atomic writer does, then stops before the rename: the state of a
    # worker that is in the middle of writing when the job is interrupted

    def write(self, paths, contents, source):
        for path, data in zip(paths, contents):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fileio._stage(Path(path), data)
        time.sleep(600)

try:
    cluster.encode([sys.argv[1]], sys.argv[2], recursive=True, bpp=1.5, weights=sys.argv[3], actors=2,
                   worker_class=StallsMidWrite)
except KeyboardInterrupt:
    sys.exit(130)
"""


def staged(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob(".*.tmp")) if folder.exists() else []


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_an_interrupted_job_removes_what_its_workers_were_writing(album, tiny_weights, tmp_path, signal_name):
    """Workers caught mid-write by the end of the job (their temporary outputs staged, not yet
    renamed) are ended with the local Ray, which does not run their own cleanup: the driver waits
    for them and removes their temporary files. Nothing of the job is left, file or process."""
    import signal
    import subprocess
    import sys

    out = tmp_path / "sics"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SICC_WEIGHTS")}
    proc = subprocess.Popen([sys.executable, "-c", STALLS_MID_WRITE, str(album), str(out), str(tiny_weights)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True,
                            **INTERRUPTIBLE)
    try:
        deadline = time.monotonic() + 240
        while len(staged(out)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)  # both workers have staged a file and stopped there
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.5)
        assert len(staged(out)) == 2 and not list(out.rglob("*.sic"))
        proc.send_signal(getattr(signal, signal_name))
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert staged(out) == []
    deadline = time.monotonic() + 30  # ended processes wait for init to collect them
    while processes_in_session(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_in_session(proc.pid) == []
