"""Many machines: ``sicc encode``/``sicc decode`` of a folder, run as a Ray Data job.

``sicc cluster encode SRC... -o DST`` (or :func:`encode`) plans the same (source, target) pairs
as the batch command (:func:`sicc.batch.plan`, over local folders or any pyarrow file system:
``s3://``, ``gs://``, ``hdfs://``), then streams them through Ray Data::

    read_binary_files(inputs)  ->  map_batches(Worker, actor pool, one file per call)  ->  driver
      (bytes + path)               (one Codec per actor, loaded once; the output is       (progress bar,
                                    written by the actor, atomically; a row per file)      results table)

The actors run :func:`sicc.batch.encode_data` / :func:`sicc.batch.decode_data`, the functions of
the batch command, so the files equal ``sicc encode``'s byte for byte. What makes a job safe to
run on millions of files:

- a file that fails (not an image, over the pixel budget, corrupt SIC) is one row of the results
  table with its one-line error and exit code; the job goes on;
- a rerun skips every output that exists and parses (a SIC file's header and every CRC, an
  image's structure), so an interrupted job resumes where it stopped (``force`` redoes all);
- an actor whose process dies is restarted and its call retried (``max_restarts=-1``,
  ``max_task_retries``); a file whose call keeps killing its worker is given up after those
  retries, and its row says so (``DataContext.max_errored_blocks``): nothing is lost silently;
- memory is bounded: Ray Data's streaming executor reads ahead only as far as its object-store
  budget allows (backpressure), each call holds one file, and sicc's pixel budget refuses an image
  too large for a worker from its header, before any pixel is decoded.

Ray is imported here only (``pip install "sicc[ray]"``); the runtime never imports this module.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from . import batch
from .fileio import EXIT_INTERNAL, EXIT_READ, EXIT_USAGE, CommandError, _process_alive, sample_paths

RESULTS_NAME = "results.parquet"
"""The results table's name inside DST (unless ``results=`` names another place)."""

TASK_RETRIES = 3
"""How often a call whose worker process died is retried on a restarted actor before its file is
recorded as failed (a file that kills every worker that touches it must not stall the job)."""

COLUMNS = ("path", "output", "status", "error", "exit_code", "bytes", "bpp", "levels", "seconds", "model_id",
           "warnings", "node")
"""The results table, one row per input. status: done, failed or skipped (an output that exists
and parses); error and exit_code: the batch command's line and code; bytes: the SIC file's size
(the input's for decode); seconds: the codec's work; warnings: one line each; node: the Ray node
that did the work."""

ONE_FILE_PER_BLOCK = 1
"""Ray Data's ``target_max_block_size`` for the job (bytes): every block is cut after one row, so
each file is its own block and each actor call its own file. Otherwise a read task packs many
small files into one block, one actor takes the whole block (the others idle), and a retry after a
killed worker redoes every file of it."""

IN_FLIGHT_PER_ACTOR = 2
"""Files queued at an actor (one at work, one ready): with one file per call, what an actor holds
in the object store is at most two input files."""

_QUIET_LOGGERS = ("ray", "ray.data", "ray._private.authentication.authentication_token_setup")
"""Ray's start-up and Ray Data's execution notes (which plan runs, where its logs are): errors only;
sicc prints its own progress bar and summary."""


def _schema():
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("output", pa.string()), ("status", pa.string()),
                      ("error", pa.string()), ("exit_code", pa.int16()), ("bytes", pa.int64()),
                      ("bpp", pa.float64()), ("levels", pa.int16()), ("seconds", pa.float64()),
                      ("model_id", pa.string()), ("warnings", pa.string()), ("node", pa.string())])


def require_ray():
    """The ray module, or a one-line error (exit 2) that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"sicc cluster needs Ray Data: pip install \"sicc[ray]\" ({exc})", EXIT_USAGE) from None
    return ray


# -- where files are ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """A pyarrow file system and how its paths are shown: ``scheme`` is '' for local files (their
    paths as given), else e.g. 's3://' (pyarrow's paths carry no scheme)."""

    filesystem: Any
    scheme: str = ""

    @property
    def local(self) -> bool:
        return not self.scheme

    def show(self, path: str) -> str:
        return self.scheme + path


def locate(name: str) -> tuple[Place, str]:
    """The file system and path of a local path or a URI that pyarrow reads (``file://`` is local)."""
    import pyarrow.fs as pafs

    if "://" in name:
        try:
            filesystem, path = pafs.FileSystem.from_uri(name)
        except (ValueError, OSError, TypeError) as exc:
            raise CommandError(f"cannot open {name}: {exc}", EXIT_USAGE) from None
        if isinstance(filesystem, pafs.LocalFileSystem):
            return Place(filesystem), path
        return Place(filesystem, name.split("://", 1)[0] + "://"), path
    return Place(pafs.LocalFileSystem()), name


def _has_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def expand(place: Place, name: str) -> list[str]:
    """A glob's matches (sorted; ``**`` crosses folders), or the name itself."""
    if not _has_glob(name):
        return [name]
    if place.local:
        return sorted(glob.glob(name, recursive=True)) if not os.path.exists(name) else [name]
    import pyarrow.fs as pafs

    base = name[: min(name.index(c) for c in "*?[" if c in name)].rsplit("/", 1)[0]
    infos = place.filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == pafs.FileType.File and fnmatch.fnmatch(info.path, name))


def _listing(place: Place):
    """``batch.plan``'s folder listing on ``place``'s file system."""
    if place.local:
        return batch.folder_files
    import pyarrow.fs as pafs

    def files(given: str, recursive: bool) -> list[str] | None:
        if place.filesystem.get_file_info(given).type != pafs.FileType.Directory:
            return None
        infos = place.filesystem.get_file_info(pafs.FileSelector(given, recursive=recursive))
        root = given.rstrip("/") + "/"
        return sorted(info.path[len(root):] for info in infos
                      if info.type == pafs.FileType.File and info.path.startswith(root))

    return files


# -- the job -----------------------------------------------------------------------------------
@dataclass
class Report:
    """What a job did: counts, where the results table is, and the exit code of the command
    (0, or the code of the first failed input in input order)."""

    results: str
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0
    startup_seconds: float = 0.0
    exit_code: int = 0
    first_error: str = ""


@dataclass
class _Job:
    """Everything the workers need, small enough to ship once per actor."""

    mode: str  # "encode" or "decode"
    options: dict
    weights: str | None
    threads: int
    output: Place
    targets: dict[str, tuple[str, str]] = field(default_factory=dict)  # read path -> (source shown, target path)


class Worker:
    """The callable class of the actor pool: ``__init__`` loads the model once per actor;
    ``__call__`` turns a batch of rows (``bytes``, ``path``) into result rows, writing each output
    atomically; every failure of a file is caught and becomes its row."""

    def __init__(self, job: _Job):
        from .codec import Codec  # numpy's BLAS is held to one thread by the codec itself

        self.job = job
        self.codec = Codec.load(job.weights)
        self.model_id = self.codec.model_id.hex()
        import ray

        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, rows: dict) -> dict:
        out: dict[str, list] = {name: [] for name in ("key", *COLUMNS)}
        for raw, path in zip(rows["bytes"], rows["path"]):
            row = self.one(bytes(raw), str(path))
            out["key"].append(str(path))
            for name in COLUMNS:
                out[name].append(row[name])
        return out

    def one(self, raw: bytes, path: str) -> dict:
        from .cli import classify, one_line

        source, target = self.job.targets[path]
        shown = self.job.output.show(target)
        row = {"path": source, "output": shown, "status": "done", "error": "", "exit_code": 0, "bytes": 0,
               "bpp": 0.0, "levels": 0, "seconds": 0.0, "model_id": self.model_id, "warnings": "", "node": self.node}
        with warnings.catch_warnings(record=True) as caught:  # one call at a time per actor: no other thread's
            warnings.simplefilter("always")
            batch.current.name = source
            try:
                paths, contents, outcome = self.work(raw, source, target)
                self.write(paths, contents, source)
                row.update(bytes=outcome.bytes, bpp=outcome.bpp, levels=outcome.levels, seconds=outcome.seconds)
            except (Exception, MemoryError) as exc:  # noqa: B014 - every failure of one file is its row
                message, code = classify(exc, source)
                row.update(status="failed", error=one_line(message), exit_code=code)
            finally:
                batch.current.name = None
        row["warnings"] = "\n".join(one_line(w.message) for w in caught)
        return row

    def work(self, raw: bytes, source: str, target: str):
        from .container import pixel_limit
        from .fileio import read_sic_input

        job = self.job
        if job.mode == "encode":
            data, outcome = batch.encode_data(self.codec, raw, source, target, threads=job.threads, **job.options)
            return [target], [data], outcome
        options = dict(job.options)
        raw = read_sic_input(source, pixel_limit(options.get("max_pixels")), data=raw)
        encoded, outcome = batch.decode_data(self.codec, raw, source, target, threads=job.threads, **options)
        return sample_paths(target, options.get("samples", 1)), encoded, outcome

    def write(self, paths: list[str], contents: list[bytes], source: str) -> None:
        """Locally: sicc's atomic writer (a temporary file renamed; N samples all or none). On an
        object store: one whole-object put per file (an object appears whole or not at all)."""
        from .fileio import EXIT_WRITE, write_outputs

        place = self.job.output
        try:
            for path in paths:
                if place.local:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                else:
                    place.filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        except OSError as exc:
            raise CommandError(f"cannot create the folder of {place.show(paths[0])}: {exc.strerror or exc}",
                               EXIT_WRITE) from None
        if place.local:
            write_outputs(paths, contents, source=source)
            return
        for path, data in zip(paths, contents):
            try:
                with place.filesystem.open_output_stream(path) as handle:
                    handle.write(data)
            except OSError as exc:
                raise CommandError(f"cannot write {place.show(path)}: {exc}", EXIT_WRITE) from None


def check_output(place: Place, mode: str, paths: list[str], model_id_hint: str = "") -> dict | None:
    """The facts of a finished output (bytes, bpp, levels, model id), or None when any of ``paths``
    is missing or does not parse: a SIC file must pass its header and every CRC (``strict``), an
    image must open and verify."""
    import io

    from . import container
    from .stream import file_info

    try:
        contents = []
        for path in paths:
            with place.filesystem.open_input_stream(path) as handle:
                contents.append(handle.read())
        if mode == "encode":
            data = container.read(contents[0], max_pixels=None)
            parsed = container.parse(data, max_pixels=None, strict=True)
            info = file_info(data)
            return {"bytes": len(data), "bpp": len(data) * 8 / (info.width * info.height),
                    "levels": len(parsed.levels), "model_id": info.model_id}
        from PIL import Image

        for content in contents:
            with Image.open(io.BytesIO(content)) as image:
                image.verify()
        return {"bytes": 0, "bpp": 0.0, "levels": 0, "model_id": model_id_hint}
    except Exception:  # noqa: BLE001 - any failure means "not a finished output": redo it
        return None


def _check_outputs(rows: dict, place: Place, mode: str, samples: int) -> dict:
    """A Ray Data stage (tasks, no model): which of the existing outputs parse."""
    out: dict[str, list] = {"index": [], "ok": [], "bytes": [], "bpp": [], "levels": [], "model_id": []}
    for index, target in zip(rows["index"], rows["target"]):
        facts = check_output(place, mode, sample_paths(str(target), samples) if mode == "decode" else [str(target)])
        out["index"].append(int(index))
        out["ok"].append(facts is not None)
        facts = facts or {"bytes": 0, "bpp": 0.0, "levels": 0, "model_id": ""}
        for name in ("bytes", "bpp", "levels", "model_id"):
            out[name].append(facts[name])
    return out


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                stopped: set[int] | None = None) -> Iterator[float]:
    """Ray for one job: the session already running in this process (kept afterwards), the cluster
    at ``address``, or a local Ray started for the job (``num_cpus``: default all). Yields the
    start-up seconds. A local Ray started here is shut down at the end, and its processes are
    waited for (RAY_EXIT_WAIT at most); ``stopped`` then receives the ids of the processes it had,
    so the caller can remove what a worker killed mid-write left behind."""
    ray = require_ray()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if ray.is_initialized():
        yield 0.0
        return
    start = time.perf_counter()
    kwargs: dict = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(address="local", num_cpus=num_cpus or len(os.sched_getaffinity(0)), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise CommandError(f"cannot start or reach Ray{' at ' + address if address else ''}: {exc}",
                           EXIT_USAGE) from None
    previous = _stop_on_sigterm()
    try:
        yield time.perf_counter() - start
    finally:
        started_here = _descendants(os.getpid()) if not address else set()
        ray.shutdown()  # a local Ray started here stops with its processes
        _wait_gone(started_here, RAY_EXIT_WAIT)
        if stopped is not None:
            stopped.update(pid for pid in started_here if not _process_alive(pid))
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


RAY_EXIT_WAIT = 15.0
"""Seconds the driver waits, after shutting down the local Ray it started, for that Ray's processes
to end (a worker ends when it notices its raylet is gone, usually well within a second)."""


def _descendants(pid: int) -> set[int]:
    """The processes below ``pid`` (children, theirs, ...), from Linux's /proc; empty elsewhere."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found: set[int] = set()
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        if child not in found:
            found.add(child)
            todo.extend(children.get(child, ()))
    return found


def _wait_gone(pids: set[int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(_process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _stop_on_sigterm():
    """SIGTERM (a scheduler or ``kill``) ends the driver through Python, so the ``finally`` that
    shuts a local Ray down runs (Ray's own handler ends the process on the spot, leaving its
    workers behind). Returns the handler it replaced (None off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)


@contextmanager
def _data_context(**settings):
    """Ray Data settings for this job, restored afterwards (the context is process-wide)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in settings}
    for name, value in settings.items():
        setattr(ctx, name, value)
    try:
        yield ctx
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def plan_job(mode: str, inputs: list[str], output: str, recursive: bool, suffix: str) -> tuple[Place, Place, list[batch.Job], set[str]]:
    """Inputs and output located, globs expanded, and the batch command's (source, target) pairs
    (source and target as paths on their file systems); the named inputs that do not exist."""
    if not inputs:
        raise CommandError("no input given", EXIT_USAGE)
    located = [locate(name) for name in inputs]
    place = located[0][0]
    if any(type(p.filesystem) is not type(place.filesystem) or p.scheme != place.scheme for p, _ in located):
        raise CommandError("all inputs must be on one file system (local paths, or URIs of one scheme)", EXIT_USAGE)
    names: list[str] = []
    for (_, path), given in zip(located, inputs):
        matches = expand(place, path)
        if not matches:
            raise CommandError(f"no file matches {given}", EXIT_READ)
        names.extend(matches)
    import pyarrow.fs as pafs

    kinds = place.filesystem.get_file_info(names)
    folders = {n for n, info in zip(names, kinds) if info.type == pafs.FileType.Directory}
    missing = {n for n, info in zip(names, kinds) if info.type == pafs.FileType.NotFound}
    out_place, out_path = locate(output)
    path_type = Path if place.local and out_place.local else PurePosixPath
    if mode == "encode":
        take = lambda p: p.suffix.lower() in batch.IMAGE_SUFFIXES  # noqa: E731
    else:
        take = lambda p: p.suffix.lower() == batch.SIC_SUFFIX  # noqa: E731
    listing = _listing(place)

    def files(given: str, recursive: bool) -> list[str] | None:
        return listing(given, recursive) if given in folders else None

    jobs = batch.plan(names, out_path, suffix, take, recursive, listing=files, path_type=path_type)
    return place, out_place, jobs, missing


def run(mode: str, inputs: list[str], output: str, *, options: dict, recursive: bool = False,
        force: bool = False, weights: str | None = None, actors: int | None = None, threads: int = 1,
        actor_memory: int | None = None, address: str | None = None, results: str | None = None,
        progress: bool = False, suffix: str | None = None, worker_class: type = Worker,
        on_result=None) -> Report:
    """The job behind :func:`encode` and :func:`decode`. ``on_result(row)`` is called with each
    row of the results table as it is recorded (a dict of :data:`COLUMNS`)."""
    suffix = suffix or (batch.SIC_SUFFIX if mode == "encode" else ".png")
    if mode == "decode":
        from .fileio import output_format

        output_format("x" + suffix, options.get("quality"))
    ray = require_ray()
    in_place, out_place, jobs, missing = plan_job(mode, inputs, output, recursive, suffix)
    results_path = results or (output.rstrip("/") + "/" + RESULTS_NAME)
    res_place, res_path = locate(results_path)
    samples = options.get("samples", 1) if mode == "decode" else 1
    report = Report(results=results_path, total=len(jobs))
    index_of = {job.source: i for i, job in enumerate(jobs)}
    first_failure: list[tuple[int, int, str]] = []
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    pending: list[dict] = []
    writer_box: dict = {}
    started = time.perf_counter()

    def record(row: dict) -> None:
        status = row["status"]
        if status == "done":
            report.done += 1
            report.bytes += int(row["bytes"]) if mode == "encode" else 0
        elif status == "skipped":
            report.skipped += 1
        else:
            report.failed += 1
            first_failure.append((index_of.get(row["_source"], len(jobs)), int(row["exit_code"]), row["error"]))
        clean = {name: (row[name] if row[name] != "" else None) for name in COLUMNS}
        pending.append(clean)
        if on_result is not None:
            on_result(clean)
        if len(pending) >= 1024:
            flush()

    def flush() -> None:
        if not pending:
            return
        if "writer" not in writer_box:
            writer_box["writer"] = pq.ParquetWriter(writer_box["sink"], schema)
        writer_box["writer"].write_table(pa.Table.from_pylist(pending, schema=schema))
        pending.clear()

    def shown_row(job: batch.Job, status: str, error: str = "", code: int = 0, facts: dict | None = None) -> dict:
        facts = facts or {}
        return {"_source": job.source, "path": in_place.show(job.source), "output": out_place.show(job.target),
                "status": status, "error": error, "exit_code": code, "bytes": facts.get("bytes", 0),
                "bpp": facts.get("bpp", 0.0), "levels": facts.get("levels", 0), "seconds": 0.0,
                "model_id": facts.get("model_id", ""), "warnings": "", "node": ""}

    ray_processes: set[int] = set()
    with _left_behind_removed(out_place, jobs, samples, ray_processes), \
            ray_session(address, stopped=ray_processes) as startup, \
            _data_context(enable_progress_bars=False, max_errored_blocks=-1, target_max_block_size=ONE_FILE_PER_BLOCK):
        report.startup_seconds = startup
        # the table is written beside its target and renamed at the end (locally), so a killed
        # driver never leaves a partial table; an object store gets it in one put when complete
        if res_place.local:
            Path(res_path).parent.mkdir(parents=True, exist_ok=True)
            tmp_results = str(Path(res_path).with_name(f".{Path(res_path).name}.{os.getpid()}.tmp"))
            writer_box["sink"] = tmp_results
        else:
            writer_box["sink"] = pa.BufferOutputStream()
        try:
            todo: list[batch.Job] = []
            for job in jobs:
                if job.source in missing:
                    record(shown_row(job, "failed", f"cannot read {in_place.show(job.source)}: No such file or directory",
                                     EXIT_READ))
                else:
                    todo.append(job)
            if not force:
                todo = _skip_finished(ray, todo, out_place, mode, samples, record, shown_row)
            job_spec = _Job(mode, options, weights, threads, out_place,
                            {job.source: (in_place.show(job.source), job.target) for job in todo})
            seen: set[str] = set()
            stopped = f"its Ray task failed {TASK_RETRIES + 1} times (see the Ray logs)"
            if todo:
                bar = batch._progress_bar(len(todo)) if progress else None
                try:
                    for row in _stream(ray, todo, in_place, job_spec, worker_class, actors, threads, actor_memory):
                        source = row["key"]
                        if source in seen:  # a retried call that had already answered: counted once
                            continue
                        seen.add(source)
                        record({**row, "_source": source})
                        if bar is not None:
                            bar.update(1)
                except Exception as exc:  # noqa: BLE001 - Ray gave up (a call that kept killing its worker):
                    # the files not done yet get their rows, and the table is written; a rerun resumes
                    first = (str(exc).strip().splitlines() or [""])[0][:300]
                    stopped = f"the Ray job stopped ({type(exc).__name__}: {first})"
                finally:
                    if bar is not None:
                        bar.close()
            for job in todo:
                if job.source not in seen:
                    record(shown_row(job, "failed", f"{in_place.show(job.source)}: not processed (no result came "
                                     f"back): {stopped}; a rerun retries it, or skips it if its output was written",
                                     EXIT_INTERNAL))
            flush()
            if "writer" not in writer_box:
                writer_box["writer"] = pq.ParquetWriter(writer_box["sink"], schema)
            writer_box["writer"].close()
            if res_place.local:
                os.replace(tmp_results, res_path)
            else:
                with res_place.filesystem.open_output_stream(res_path) as handle:
                    handle.write(writer_box["sink"].getvalue())
        except BaseException:
            if res_place.local and os.path.exists(writer_box["sink"]):
                os.unlink(writer_box["sink"])
            raise
    report.seconds = time.perf_counter() - started
    if first_failure:
        _, report.exit_code, report.first_error = min(first_failure)
    return report


@contextmanager
def _left_behind_removed(out_place: Place, jobs: list[batch.Job], samples: int, writers: set[int]):
    """At the end of a job, however it ends: the temporary outputs that the local Ray's workers
    (``writers``, filled in when that Ray has stopped) left beside the job's targets when they were
    killed mid-write (a Ctrl-C, a crash) are removed. A worker writes through sicc's atomic writer,
    whose own cleanup does not run when its process is ended abruptly."""
    from .fileio import remove_temporaries_of

    try:
        yield
    finally:
        if out_place.local and writers:
            targets = [path for job in jobs for path in sample_paths(job.target, samples)]
            remove_temporaries_of(targets, writers)


def _skip_finished(ray, todo, out_place, mode, samples, record, shown_row) -> list[batch.Job]:
    """The jobs left once outputs that exist and parse are recorded as skipped: existence for all
    in one call, the parse check of the existing ones in parallel Ray tasks."""
    import pyarrow.fs as pafs

    firsts = [sample_paths(job.target, samples)[0] if mode == "decode" else job.target for job in todo]
    infos = out_place.filesystem.get_file_info(firsts) if firsts else []
    existing = [i for i, info in enumerate(infos) if info.type == pafs.FileType.File]
    if not existing:
        return todo
    checked = ray.data.from_items([{"index": i, "target": todo[i].target} for i in existing])
    checked = checked.map_batches(_check_outputs, batch_size=64, batch_format="numpy",
                                  fn_kwargs={"place": out_place, "mode": mode, "samples": samples})
    finished: set[int] = set()
    for row in checked.iter_rows():
        if row["ok"]:
            index = int(row["index"])
            finished.add(index)
            record(shown_row(todo[index], "skipped", facts={k: row[k] for k in ("bytes", "bpp", "levels", "model_id")}))
    return [job for i, job in enumerate(todo) if i not in finished]


def _stream(ray, todo, in_place, job_spec, worker_class, actors, threads, actor_memory) -> Iterator[dict]:
    """Result rows as the actors produce them (Ray Data's streaming executor)."""
    paths = [job.source for job in todo]
    cpus = ray.cluster_resources().get("CPU", 1)
    size = actors or max(1, min(len(paths), int(cpus // max(1, threads))))
    # reading is I/O: its tasks take no CPU, so a pool that holds every CPU cannot starve them, and
    # as many run at once as there are actors (each read task reads several files)
    ds = ray.data.read_binary_files(paths, include_paths=True, filesystem=in_place.filesystem, num_cpus=0,
                                    concurrency=size)
    extra = {"memory": actor_memory} if actor_memory else {}
    pool = ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR)
    with warnings.catch_warnings():  # the retry settings have no named parameter yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(worker_class, fn_constructor_kwargs={"job": job_spec}, batch_size=1,
                            batch_format="numpy", compute=pool, num_cpus=threads, max_restarts=-1,
                            max_task_retries=TASK_RETRIES, **extra)
    yield from ds.iter_rows()


# -- the Python entries ------------------------------------------------------------------------
def encode(inputs: list[str] | str, output: str, *, levels: int | None = None, bpp: float | None = None,
           max_bytes: int | None = None, strip: bool = False, max_pixels: int | None = None,
           at_least_one: bool = False,
           recursive: bool = False, force: bool = False, weights: str | None = None, actors: int | None = None,
           threads: int = 1, actor_memory: int | None = None, address: str | None = None,
           results: str | None = None, progress: bool = False, worker_class: type = Worker,
           on_result=None) -> Report:
    """Encode images (files, folders, globs, or URIs pyarrow reads) into ``output`` with Ray Data,
    as ``sicc encode INPUTS -o OUTPUT`` would (same names, folder layout and bytes), and write the
    results table (``OUTPUT/results.parquet`` unless ``results``).

    ``actors`` (default: the cluster's CPUs / ``threads``) each load the model once and take one
    file at a time with ``threads`` tile threads; ``actor_memory`` (bytes) reserves memory per
    actor for Ray's scheduler. Ray: the session of this process if one is running, else the
    cluster at ``address``, else a local Ray started for the job. ``worker_class``: a subclass of
    :class:`Worker` to run instead (instrumentation); ``on_result(row)``: called with each row of
    the results table as it comes."""
    if sum(x is not None for x in (levels, bpp, max_bytes)) > 1:
        raise CommandError("give at most one of --levels, --bytes, --bpp", EXIT_USAGE)
    options = dict(levels=levels, bpp=bpp, max_bytes=max_bytes, strip=strip, max_pixels=max_pixels,
                   at_least_one=at_least_one)
    return run("encode", [inputs] if isinstance(inputs, str) else list(inputs), output, options=options,
               recursive=recursive, force=force, weights=weights, actors=actors, threads=threads,
               actor_memory=actor_memory, address=address, results=results, progress=progress,
               worker_class=worker_class, on_result=on_result)


def decode(inputs: list[str] | str, output: str, *, samples: int = 1, seed: int = 0, spread: float | None = None,
           level: int | None = None, strict: bool = False, max_pixels: int | None = None, quality: int | None = None,
           format: str = "png", recursive: bool = False, force: bool = False, weights: str | None = None,
           actors: int | None = None, threads: int = 1, actor_memory: int | None = None, address: str | None = None,
           results: str | None = None, progress: bool = False, worker_class: type = Worker,
           on_result=None) -> Report:
    """Decode SIC files into ``output`` with Ray Data, as ``sicc decode INPUTS -o OUTPUT --format
    FORMAT`` would; the other arguments as in :func:`encode`."""
    options = dict(samples=samples, seed=seed, spread=spread, level=level, strict=strict, max_pixels=max_pixels,
                   quality=quality)
    return run("decode", [inputs] if isinstance(inputs, str) else list(inputs), output, options=options,
               recursive=recursive, force=force, weights=weights, actors=actors, threads=threads,
               actor_memory=actor_memory, address=address, results=results, progress=progress,
               suffix="." + format.lstrip("."), worker_class=worker_class, on_result=on_result)


def summary(report: Report, what: str) -> str:
    """The command's last line."""
    return (f"{what} {report.done} of {report.total} files ({report.failed} failed, {report.skipped} skipped), "
            f"{report.bytes} bytes, {report.seconds:.2f} s (Ray start-up {report.startup_seconds:.2f} s); "
            f"results: {report.results}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `sicc cluster encode|decode`")
