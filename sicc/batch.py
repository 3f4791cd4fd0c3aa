"""One file's encode or decode, and many of them: ``sicc encode a.png b.png -o out/``.

The model is loaded once and shared; ``jobs`` files run at a time on threads (the networks and
the range coder release the GIL, and a thread pool needs no second copy of the model, unlike a
process pool). A file that fails is reported and the others go on; outputs that exist are kept
unless ``force``. ``cli.py`` parses the flags and calls :func:`plan` and :func:`run_all`.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Callable, Iterator

from . import container
from .container import pixel_limit
from .errors import SiccWarning
from .fileio import (
    EXIT_READ,
    EXIT_USAGE,
    CommandError,
    check_output_folders,
    display_name,
    image_bytes,
    output_format,
    read_input,
    read_sic_input,
    refuse_terminal,
    sample_paths,
    write_output,
    write_outputs,
)
from .stream import file_info

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".ppm", ".pgm", ".pnm", ".gif"})
"""Files taken from a folder for ``encode`` (files named on the command line are always taken)."""
SIC_SUFFIX = ".sic"

current = threading.local()
"""``current.name``: the input a thread is working on, so warnings can name it."""


@dataclass(frozen=True)
class Job:
    source: str
    target: str


@dataclass
class Outcome:
    """What one file gave: the summary facts the command prints."""

    source: str
    target: str
    width: int = 0
    height: int = 0
    bytes: int = 0
    levels: int = 0
    model_levels: int = 0
    samples: int = 1
    seconds: float = 0.0
    output_bytes: int = 0  # what was written: the image files of a decode, the SIC file of an encode
    details: list[str] = field(default_factory=list)  # -vv lines

    @property
    def bpp(self) -> float:
        return self.bytes * 8 / max(1, self.width * self.height)


# -- one file --------------------------------------------------------------------------------
def _loaded(codec):
    """A Codec, or a function that loads one (called only once the cheap checks have passed)."""
    return codec() if callable(codec) else codec


def refuse_sic_input(raw: bytes, source: str) -> None:
    """``sicc encode`` takes images: a SIC file given to it is refused (exit 2) with the right command."""
    if raw.startswith(container.MAGIC):
        raise CommandError(f"{display_name(source)} is already a SIC file; `sicc truncate` makes it smaller "
                           "without re-encoding (or decode it first to re-encode the pixels)", EXIT_USAGE)


def encode_data(codec, raw: bytes, source: str, target: str, levels: int | None = None, bpp: float | None = None,
                max_bytes: int | None = None, strip: bool = False, max_pixels: int | None = None,
                threads: int | None = None, progress=None, at_least_one: bool = False) -> tuple[bytes, Outcome]:
    """The SIC file of ``raw``, the bytes of the image file ``source``, and its summary (to be
    written to ``target``): sicc's own image reader and pixel budget, then the codec. Shared by
    :func:`encode_file` and the Ray workers of ``sicc.cluster``, so both write the same bytes."""
    import io

    from .image_io import load_rgb

    refuse_sic_input(raw, source)
    start = time.perf_counter()
    rgb = load_rgb(io.BytesIO(raw), pixel_limit(max_pixels))
    data = _loaded(codec).encode(rgb, levels=levels, bpp=bpp, max_bytes=max_bytes, keep_metadata=not strip,
                                 max_pixels=max_pixels, threads=threads, progress=progress, at_least_one=at_least_one)
    seconds = time.perf_counter() - start
    info = file_info(data, max_pixels)
    details = [f"  level {lv.index:2d}: cumulative {lv.cumulative_bytes} bytes, {lv.cumulative_bpp:.4f} bpp"
               for lv in info.levels]
    return data, Outcome(source, target, info.width, info.height, len(data), len(info.levels), info.model_levels,
                         seconds=seconds, output_bytes=len(data), details=details)


def encode_file(codec, source: str, target: str, levels: int | None = None, bpp: float | None = None,
                max_bytes: int | None = None, strip: bool = False, max_pixels: int | None = None,
                threads: int | None = None, progress=None, at_least_one: bool = False) -> Outcome:
    """Encode ``source`` ('-': stdin) into ``target`` ('-': stdout), atomically. ``codec`` may be a
    loader: the input is read, decoded and size-checked and the output folder checked first."""
    refuse_terminal(target)
    raw = read_input(source, pixel_limit(max_pixels))  # in pieces; a pipe capped from the budget
    refuse_sic_input(raw, source)
    check_output_folders([target])
    data, outcome = encode_data(codec, raw, source, target, levels=levels, bpp=bpp, max_bytes=max_bytes,
                                strip=strip, max_pixels=max_pixels, threads=threads, progress=progress,
                                at_least_one=at_least_one)
    write_output(target, data, source=source)
    return outcome


def decode_data(codec, raw: bytes, source: str, target: str, samples: int = 1, seed: int = 0,
                spread: float | None = None, level: int | None = None, strict: bool = False,
                max_pixels: int | None = None, quality: int | None = None, threads: int | None = None,
                progress=None) -> tuple[Iterator[bytes], Outcome]:
    """The image files (one per name of ``sample_paths(target, samples)``, in ``target``'s format)
    decoded from ``raw``, a SIC file already checked by :func:`read_sic_input`, and the summary.
    Shared by :func:`decode_file` and the Ray workers of ``sicc.cluster``.

    The levels are range-decoded (and every error about the file raised) here; the files come one
    at a time as the iterator is advanced (each sample synthesized and encoded, then dropped before
    the next is made), and ``outcome.seconds`` counts the whole decode once it is exhausted."""
    fmt = output_format(target, quality)
    paths = sample_paths(target, samples)
    start = time.perf_counter()
    images = _loaded(codec).decode_iter(raw, samples=samples, seed=seed, spread=spread, level=level,
                                        strict=strict, max_pixels=max_pixels, threads=threads, progress=progress)
    info = file_info(raw, max_pixels)
    used = len(info.levels) if level is None else level
    outcome = Outcome(source, target, info.width, info.height, len(raw), used, info.model_levels, samples=samples)

    def encoded() -> Iterator[bytes]:
        for data in _encoded_one_by_one(images, paths, fmt, quality):
            outcome.output_bytes += len(data)
            yield data
        outcome.seconds = time.perf_counter() - start

    return encoded(), outcome


def decode_file(codec, source: str, target: str, samples: int = 1, seed: int = 0, spread: float | None = None,
                level: int | None = None, strict: bool = False, max_pixels: int | None = None,
                quality: int | None = None, threads: int | None = None, progress=None) -> Outcome:
    """Decode ``source`` into ``target`` (or its numbered sample names), all or nothing. ``codec``
    may be a loader: the output folder, the SIC header and the pixel limit are checked first."""
    output_format(target, quality)
    paths = sample_paths(target, samples)
    refuse_terminal(target)
    raw = read_sic_input(source, pixel_limit(max_pixels))  # bounded; the budget from the header
    check_output_folders(paths)
    encoded, outcome = decode_data(codec, raw, source, target, samples=samples, seed=seed, spread=spread,
                                   level=level, strict=strict, max_pixels=max_pixels, quality=quality,
                                   threads=threads, progress=progress)
    # One sample at a time: each is synthesized, encoded and staged to its temporary file before the
    # next is made, so N samples hold one image in memory, not N; the set is renamed at the end.
    write_outputs(paths, encoded, source=source)
    return outcome


def _encoded_one_by_one(images, paths: list[str], fmt: str, quality: int | None):
    """Each image encoded as it comes, and dropped before the next is made (neither zip() nor
    enumerate(), whose cached tuples would hold the previous image meanwhile)."""
    images = iter(images)
    for path in paths:
        image = next(images)
        data = image_bytes(image, fmt, quality, name=path)
        del image
        yield data


# -- many files ------------------------------------------------------------------------------
def is_batch(inputs: list[str], output: str) -> bool:
    """Several inputs, an input folder, or an output named as a folder (a trailing slash). One file
    and an existing folder without the slash stays one file (and fails to be written over a folder)."""
    return len(inputs) > 1 or any(os.path.isdir(p) for p in inputs) or output.endswith(os.sep)


def folder_files(given: str, recursive: bool) -> list[str] | None:
    """The files of the local folder ``given`` as paths relative to it, sorted (those of sub-folders
    too with ``recursive``); None when ``given`` is not a folder (a file, or a name to fail on)."""
    root = Path(given)
    if not root.is_dir():
        return None
    found = sorted(root.rglob("*") if recursive else root.iterdir())
    return [path.relative_to(root).as_posix() for path in found if path.is_file()]


def _sub_folders(given: str) -> list[str]:
    """The visible sub-folders of the local folder ``given`` (none for another file system's)."""
    root = Path(given)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def plan(inputs: list[str], output: str, suffix: str, take: Callable[[PurePath], bool], recursive: bool,
         what: str = "input", listing: Callable[[str, bool], list[str] | None] = folder_files,
         path_type: type = Path) -> list[Job]:
    """The (source, target) pairs of a batch: each named file, and the files of each named folder
    that ``take`` accepts (sub-folders too with ``recursive``, mirrored under ``output``; without
    it, skipped sub-folders are reported in a warning); hidden files and folders are left out. A
    folder with no file to take is an error (exit 3: nothing would be done); ``what`` names those
    files in the message ("image", "SIC"). ``listing`` and ``path_type`` give another file system's
    folders and paths (``sicc.cluster`` passes pyarrow's), under the same naming rule."""
    if output == "-" or "-" in inputs:
        raise CommandError("standard input and output ('-') take one file; give file names with -o DIR", EXIT_USAGE)
    out = path_type(output)
    if isinstance(out, Path) and out.exists() and not out.is_dir():
        raise CommandError(f"with several inputs, -o must be a folder; {output} is a file", EXIT_USAGE)
    jobs: list[Job] = []
    skipped: list[str] = []  # said once the plan stands (an error is one line on its own)
    for given in inputs:
        files = listing(given, recursive)
        if files is None:
            jobs.append(Job(given, str(out / (path_type(given).stem + suffix))))
            continue
        taken = [PurePosixPath(name) for name in files]
        taken = [rel for rel in taken if take(rel) and not any(part.startswith(".") for part in rel.parts)]
        jobs.extend(Job(str(path_type(given) / rel), str((out / rel).with_suffix(suffix))) for rel in taken)
        folders = [] if recursive else _sub_folders(given)
        if not taken:
            raise CommandError(f"{given}: no {what} files in this folder"
                               f"{' (its sub-folders need -r)' if folders else ''}", EXIT_READ)
        if folders:
            skipped.append(f"{given}: {len(folders)} sub-folder{'s' if len(folders) > 1 else ''} skipped "
                           f"({folders[0]}{', ...' if len(folders) > 1 else ''}); -r takes them too")
    seen: dict[str, str] = {}
    for job in jobs:
        key = os.path.normpath(job.target)
        if key in seen:
            raise CommandError(f"{seen[key]} and {job.source} would both be written to {job.target}", EXIT_USAGE)
        seen[key] = job.source
    for message in skipped:
        warnings.warn(message, SiccWarning, stacklevel=2)
    return jobs


@dataclass
class BatchReport:
    done: list[Outcome] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # (source, message, exit code)
    skipped: list[Job] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every file succeeded, else the exit code of the first failure (in input order)."""
        return self.failed[0][2] if self.failed else 0


def run_all(jobs: list[Job], work: Callable[[Job], Outcome], classify: Callable[[BaseException], tuple[str, int]],
            parallel: int = 1, force: bool = False, progress: bool = False,
            exists: Callable[[Job], bool] = lambda job: os.path.lexists(job.target),
            on_done: Callable[[Outcome], None] | None = None,
            on_error: Callable[[str, str], None] | None = None) -> BatchReport:
    """Run ``work`` on every job, ``parallel`` at a time; a failure (``classify`` gives its message
    and exit code) is reported through ``on_error`` and the rest go on. Ctrl-C stops everything."""
    report = BatchReport()
    todo = []
    for job in jobs:
        if not force and exists(job):
            report.skipped.append(job)
        else:
            todo.append(job)
    bar = _progress_bar(len(todo)) if progress and todo else None
    lock = threading.Lock()
    results: dict[int, tuple[Outcome | None, tuple[str, int] | None]] = {}

    def one(index: int, job: Job) -> None:
        current.name = job.source
        try:
            outcome, failure = work(job), None
        except (Exception, MemoryError) as exc:  # noqa: B014 - every failure of one file is reported
            outcome, failure = None, classify(exc)
        finally:
            current.name = None
        with lock:
            results[index] = (outcome, failure)
            if failure and on_error:
                _print_above(bar, lambda: on_error(job.source, failure[0]))
            if outcome and on_done:
                _print_above(bar, lambda: on_done(outcome))
            if bar is not None:
                bar.update(1)

    try:
        if parallel <= 1:
            for index, job in enumerate(todo):
                one(index, job)
        else:
            with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="sicc") as pool:
                futures = [pool.submit(one, index, job) for index, job in enumerate(todo)]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        if bar is not None:
            bar.close()
    for index, job in enumerate(todo):
        outcome, failure = results[index]
        if failure:
            report.failed.append((job.source, *failure))
        else:
            report.done.append(outcome)
    return report


def _progress_bar(total: int):
    import sys

    from tqdm import tqdm

    return tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True, leave=False)


def _print_above(bar, show: Callable[[], None]) -> None:
    if bar is None:
        show()
    else:
        with bar.external_write_mode():
            show()
