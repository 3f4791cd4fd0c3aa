"""The ``sicc`` command: a thin shell over the Python API.

Flags are parsed here; files are read and written by ``sicc/fileio.py``, one file's and many
files' work is ``sicc/batch.py``, contact sheets are ``sicc/contact_sheet.py``.

Exit codes (also in README.md and ``sicc --help``):
  0 success; 1 internal error; 2 bad arguments; 3 cannot read input;
  4 invalid, corrupt or unsupported input data; 5 cannot write output; 130 interrupted (Ctrl-C);
  143 terminated (SIGTERM).
"""

from __future__ import annotations

import os

# numpy's BLAS runs the small exact matrix products of the probability model; its own thread pool
# would only spin against the tile workers (set before numpy is first imported).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402

from . import batch
from .fileio import (
    EXIT_DATA,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_READ,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EXIT_WRITE,
    OUTPUT_FORMATS,
    CommandError,
    QuietExit,
    Terminated,
    display_name,
    image_bytes,
    output_format,
    read_sic_input,
    refuse_terminal,
    sample_paths,
    standard_output,
    write_output,
)
from . import MAX_IMAGE_PIXELS
from .model.config import ModelConfig

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_READ", "EXIT_DATA", "EXIT_WRITE", "EXIT_INTERRUPTED", "EXIT_TERMINATED",
           "OUTPUT_FORMATS", "main", "run"]

SPREAD_HELP = ("Detail sampling spread s in round(mu + s*u); 0 gives the deterministic mean decode. Default: 0 for "
               "one picture (the best-scoring decode, README 'Which decode by default'), 2 for --samples N > 1.")

EPILOG_ONE = """\b
Exit codes: 0 ok, 1 internal error, 2 bad arguments, 3 cannot read input,
4 invalid/corrupt/unsupported data, 5 cannot write output, 130 interrupted,
143 terminated (SIGTERM).
"""
"""The exit codes, for the commands that take one input (truncate, info, montage)."""

EPILOG = EPILOG_ONE + """\b
With several inputs: 0 if every file succeeded, else the code of the first that failed.
"""

LEVELS = ModelConfig().levels
"""Levels of the shipped model, for the help text (a file's own model is checked when it is read)."""


class Settings:
    def __init__(self, quiet: bool, verbose: int, weights: str | None, threads: int | None = None):
        self.quiet, self.verbose, self.weights, self.threads = quiet, verbose, weights, threads

    def say(self, message: str, level: int = 0) -> None:
        """A line on stderr: level 0 is the default summary (off with -q), 1 needs -v, 2 needs -vv."""
        if not self.quiet and self.verbose >= level:
            click.echo(message, err=True)


class SeedRange(click.IntRange):
    """0 .. 2^63-1, shown as such rather than as 9223372036854775807."""

    def _describe_range(self) -> str:
        return "0<=x<2^63"


def print_out(text: str) -> None:
    """A line on standard output; a closed pipe ends the command quietly, a full disk is a write
    error (exit 5), not click's silent exit 1."""
    standard_output()  # a closed standard output is a write error (exit 5), not silence
    try:
        click.echo(text)
    except BrokenPipeError:
        raise QuietExit() from None
    except OSError as exc:
        raise CommandError(f"cannot write to standard output: {exc.strerror or exc}", EXIT_WRITE) from None


def classify(exc: BaseException, source: str | None = None) -> tuple[str, int]:
    """The one-line message and exit code of a failure; data and image errors name the input."""
    from .errors import ArgumentError, InputImageError, SiccError

    prefix = f"{display_name(source)}: " if source else ""
    if isinstance(exc, CommandError):
        return str(exc), exc.code
    if isinstance(exc, InputImageError):
        return prefix + str(exc), EXIT_READ
    if isinstance(exc, ArgumentError):  # a request this file cannot satisfy: a usage error, naming the file
        return prefix + str(exc), EXIT_USAGE
    if isinstance(exc, SiccError):
        text = str(exc)  # a message that already starts with the name (the not-a-SIC-file hint) keeps it
        return (text if source and text.startswith(display_name(source)) else prefix + text), EXIT_DATA
    if isinstance(exc, ValueError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, MemoryError):
        return "out of memory", EXIT_INTERNAL
    return f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL


@contextmanager
def reported_errors(settings: Settings, source: str | None = None):
    """Map every failure to one stderr line and its exit code; warnings to one line each, naming
    the file being worked on."""

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if not settings.quiet:
            name = getattr(batch.current, "name", None) or source
            text = one_line(message)
            if name and not text.startswith(f"{display_name(name)}:"):
                text = f"{display_name(name)}: {text}"
            click.echo(f"sicc: warning: {text}", err=True)

    warnings.showwarning = show_warning
    warnings.simplefilter("always", _sicc_warning())  # one per file in a batch, not one per location
    try:
        yield
    except QuietExit:
        _quiet_exit()
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except (CommandError, ValueError, MemoryError) as exc:
        _fail(*classify(exc, source))
    except Exception as exc:
        from .errors import SiccError

        if not isinstance(exc, SiccError):
            raise
        _fail(*classify(exc, source))


def _sicc_warning():
    from .errors import SiccWarning

    return SiccWarning


def one_line(message) -> str:
    """Message text on one line: newlines become spaces, other control characters are escaped."""
    text = " ".join(str(message).splitlines())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(message: str, code: int) -> None:
    click.echo(f"sicc: error: {one_line(message)}", err=True)
    sys.exit(code)


def _interrupted(exc: KeyboardInterrupt) -> None:
    """Ctrl-C exits 130, SIGTERM 143 (the temporary files are gone by the time this runs)."""
    if isinstance(exc, Terminated):
        _fail("terminated", EXIT_TERMINATED)
    _fail("interrupted", EXIT_INTERRUPTED)


def _quiet_exit() -> None:
    """The reader of standard output went away: exit 0 without a word, and without Python's own
    complaint when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(EXIT_OK)


def _codec(settings: Settings):
    """The model: a file that cannot be read exits 3, a damaged or foreign one exits 4."""
    from .codec import Codec
    from .errors import WeightsError

    path = settings.weights or os.environ.get("SICC_WEIGHTS")
    try:
        codec = Codec.load(path)
    except OSError as exc:
        raise CommandError(f"cannot read model weights {path or '(shipped)'}: {exc.strerror or exc}",
                           EXIT_READ) from None
    except WeightsError as exc:
        raise CommandError(f"invalid model weights {path or '(shipped)'}: {exc}", EXIT_DATA) from None
    settings.say(f"model {codec.model_id.hex()} ({path or 'shipped'}), {codec.config.levels} levels", 1)
    return codec


class ProgressLine:
    """``sicc: levels 3/16``, ``sicc: synthesis 2/6`` rewritten in place on stderr (at most ten
    times a second) and erased at the end: the Codec's progress callback for a terminal."""

    def __init__(self):
        self.shown, self.last = False, 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last, self.shown = now, True
        click.echo(f"\rsicc: {stage} {done}/{total}\x1b[K", err=True, nl=False)

    def close(self) -> None:
        if self.shown:
            click.echo("\r\x1b[K", err=True, nl=False)
            self.shown = False


@contextmanager
def progress_display(settings: Settings):
    """A ProgressLine when stderr is a terminal and not --quiet, else None (nothing shown)."""
    if settings.quiet or not sys.stderr.isatty():
        yield None
        return
    line = ProgressLine()
    try:
        yield line
    finally:
        line.close()


# -- options ---------------------------------------------------------------------------
def _set_quiet(ctx: click.Context, _param, value: bool) -> None:
    if value:
        ctx.find_object(Settings).quiet = True


def _add_verbose(ctx: click.Context, _param, value: int) -> None:
    ctx.find_object(Settings).verbose += value


def _set_threads(ctx: click.Context, _param, value: int | None) -> None:
    if value:
        ctx.find_object(Settings).threads = value


def _set_weights(ctx: click.Context, _param, value: str | None) -> None:
    if value:
        ctx.find_object(Settings).weights = value


max_pixels_option = click.option(
    "--max-pixels", type=click.IntRange(1), default=None,
    help="Pixel budget: refuse images whose size padded to multiples of 64 has more pixels than "
         f"this (default {MAX_IMAGE_PIXELS}).")
"""One pixel budget for encode, decode, info and truncate (sicc.MAX_IMAGE_PIXELS when not given): on
the SIC side it also bounds the bytes a header may make sicc read."""


def rate_options(command):
    """--levels/--bytes/--bpp/--strip/--at-least-one: what `encode` keeps (and `cluster encode`)."""
    for option in reversed((  # applied last to first: listed in this order by --help
        click.option("--levels", type=click.IntRange(1, LEVELS), default=None, help="Keep levels 1..N (default: all)."),
        click.option("--bytes", "max_bytes", type=click.IntRange(1), default=None,
                     help="Keep the most levels that fit in B bytes (at least level 1)."),
        click.option("--bpp", type=click.FloatRange(0, min_open=True), default=None,
                     help="Keep the most levels that fit in R bits per pixel (at least level 1)."),
        click.option("--strip", is_flag=True, help="Do not carry the ICC profile and EXIF over."),
        click.option("--at-least-one", is_flag=True,
                     help="A --bytes/--bpp budget below level 1 keeps level 1 (with a warning) instead of failing."),
    )):
        command = option(command)
    return command


def sample_options(command):
    """--samples/--seed/--spread/--level: which pictures `decode` makes (and `cluster decode`)."""
    for option in reversed((  # applied last to first: listed in this order by --help
        click.option("--samples", type=click.IntRange(1, 1024), default=1, show_default=True,
                     help="Number of synonymous reconstructions."),
        click.option("--seed", type=SeedRange(0, 2**63 - 1), default=0, show_default=True,
                     help="Seed of the sampled details; same seed, same pixels."),
        click.option("--spread", type=click.FloatRange(0, 16), default=None, help=SPREAD_HELP),
        click.option("--level", type=click.IntRange(1, LEVELS), default=None,
                     help="Decode from the first L levels only (default: all levels in the file)."),
    )):
        command = option(command)
    return command


def output_options(command):
    """-q/-v work after the subcommand too, as in `sicc info -q`."""
    for option in (
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
                     help="Print nothing but errors."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_add_verbose,
                     help="More detail: -v model and timings, -vv per-level sizes."),
    ):
        command = option(command)
    return command


def model_options(command):
    """--threads/--weights, for the commands that run the model."""
    for option in (
        click.option("--threads", type=click.IntRange(1, 256), expose_value=False, callback=_set_threads,
                     help="Tiles transformed in parallel (default: CPUs, at most 4); never changes the pixels."),
        click.option("--weights", type=click.Path(dir_okay=False), expose_value=False, callback=_set_weights,
                     help="Model weights file (default: the shipped model; also SICC_WEIGHTS)."),
    ):
        command = option(command)
    return output_options(command)


def batch_options(command):
    for option in (
        click.option("-r", "--recursive", is_flag=True, help="Take the files of sub-folders too."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
                     help="Files worked on at a time, sharing one loaded model."),
        click.option("-f/-k", "--force/--keep", default=True,
                     help="Overwrite existing outputs (the default, as cjxl and djxl do), or keep them with a "
                          "warning each, e.g. to resume a folder run."),
    ):
        command = option(command)
    return command


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="More detail: -v model and timings, -vv per-level sizes.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Tiles transformed in parallel (default: CPUs, at most 4); never changes the pixels.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="SICC_WEIGHTS",
              help="Model weights file (default: the shipped model; also SICC_WEIGHTS).")
@click.version_option(None, "-V", "--version", package_name="sicc", prog_name="sicc")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int, threads: int | None, weights: str | None) -> None:
    """Progressive synonymous image codec: encode, truncate, decode one or many reconstructions."""
    ctx.obj = Settings(quiet, verbose, weights, threads)


def _one_rate(levels: int | None, max_bytes: int | None, bpp: float | None) -> None:
    if sum(x is not None for x in (levels, max_bytes, bpp)) > 1:
        raise CommandError("give at most one of --levels, --bytes, --bpp", EXIT_USAGE)


def _file_threads(settings: Settings, jobs: int) -> int | None:
    """N files at a time share the cores: each gets cores/N tile threads unless --threads says."""
    if settings.threads or jobs <= 1:
        return settings.threads
    return max(1, (os.cpu_count() or 1) // jobs)


def _run_batch(settings: Settings, jobs_list: list[batch.Job], work, parallel: int, force: bool,
               exists=None, what: str = "encoded", on_done=None) -> None:
    """Many files: progress bar on a terminal, one line per failure, a total line; the exit code
    says whether any failed. ``on_done(outcome)``: what to print per file (default: -v lines)."""
    def summary_line(outcome: batch.Outcome) -> None:
        settings.say(_summary(outcome, what), 1)

    def on_error(source: str, message: str) -> None:
        click.echo(f"sicc: error: {one_line(message)}", err=True)

    start = time.perf_counter()
    report = batch.run_all(
        jobs_list, work, classify=lambda exc: classify(exc, batch.current.name),
        parallel=parallel, force=force, progress=not settings.quiet and sys.stderr.isatty(),
        on_done=on_done or summary_line, on_error=on_error, **({"exists": exists} if exists else {}))
    for job in report.skipped if not settings.quiet else ():
        click.echo(f"sicc: warning: {job.target} exists, kept (--keep)", err=True)
    total = sum(o.bytes for o in report.done)
    settings.say(f"{what} {len(report.done)} of {len(jobs_list)} files ({len(report.failed)} failed, "
                 f"{len(report.skipped)} kept), {total} bytes, {time.perf_counter() - start:.2f} s")
    if report.exit_code:
        sys.exit(report.exit_code)


def _encoded_json(outcome: batch.Outcome) -> dict:
    """One file's encode as the JSON object of `sicc encode --json`."""
    return {"input": outcome.source, "output": outcome.target, "width": outcome.width, "height": outcome.height,
            "bytes": outcome.bytes, "bpp": round(outcome.bpp, 6), "levels": outcome.levels,
            "model_levels": outcome.model_levels, "seconds": round(outcome.seconds, 4)}


def _warn_image_name(output: str) -> None:
    """SIC data under an image's name (``-o x.png``) would fool every viewer: say so, as cjxl users
    would expect, and write it anyway (the name is the user's choice)."""
    suffix = Path(output).suffix.lower()
    if output != "-" and suffix in batch.IMAGE_SUFFIXES:
        warnings.warn(f"{output}: SIC data written under a {suffix} name (did you mean `sicc decode`, or -o "
                      f"{Path(output).with_suffix(batch.SIC_SUFFIX).name}?)", _sicc_warning(), stacklevel=2)


def _kept(force: bool, paths: list[str]) -> bool:
    """With --keep, an output that exists is left alone, with a warning (what a folder run does)."""
    existing = [p for p in paths if p != "-" and os.path.lexists(p)]
    if force or not existing:
        return False
    for path in existing:
        warnings.warn(f"{path} exists, kept (--keep)", _sicc_warning(), stacklevel=2)
    return True


def _summary(outcome: batch.Outcome, what: str) -> str:
    if what == "encoded":
        return (f"{display_name(outcome.target, output=True)}: {outcome.width}x{outcome.height}, {outcome.bytes} bytes, "
                f"{outcome.bpp:.4f} bpp, {outcome.levels}/{outcome.model_levels} levels, {outcome.seconds:.2f} s")
    samples = f", {outcome.samples} samples" if outcome.samples > 1 else ""
    written = f", {outcome.output_bytes} bytes written" if outcome.target != "-" else ""
    return (f"{display_name(outcome.target, output=True)}: {outcome.width}x{outcome.height} from {outcome.levels}/"
            f"{outcome.model_levels} levels ({outcome.bpp:.4f} bpp){samples}{written}, {outcome.seconds:.2f} s")


def _mkdirs(target: str) -> None:
    try:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create the folder of {target}: {exc.strerror or exc}", EXIT_WRITE) from None


# -- commands ----------------------------------------------------------------------------
@main.command(epilog=EPILOG, short_help="Encode images into SIC files.")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True,
              help="Output .sic file ('-' = standard output), or a folder for several inputs.")
@rate_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on standard output (one object "
              "per file: input, output, size, bytes, bpp, levels, seconds).")
@max_pixels_option
@batch_options
@model_options
@click.pass_obj
def encode(settings: Settings, inputs: tuple[str, ...], output: str, levels: int | None, max_bytes: int | None,
           bpp: float | None, strip: bool, at_least_one: bool, as_json: bool, max_pixels: int | None,
           recursive: bool, jobs: int, force: bool) -> None:
    """Encode PNG, JPEG, WebP, TIFF, GIF, BMP or PPM/PGM images (or '-' for standard input) into SIC
    files, at full rate or at the rate of --levels/--bytes/--bpp. With several inputs or folders,
    -o names a folder."""
    with reported_errors(settings, inputs[0] if len(inputs) == 1 else None):
        _one_rate(levels, max_bytes, bpp)
        if as_json and output == "-":
            raise CommandError("--json prints on standard output: write the SIC data to a file", EXIT_USAGE)
        rate = dict(levels=levels, bpp=bpp, max_bytes=max_bytes, strip=strip, max_pixels=max_pixels,
                    at_least_one=at_least_one)
        if not batch.is_batch(list(inputs), output):
            if _kept(force, [output]):
                return
            with progress_display(settings) as progress:  # the model loads after the cheap checks
                outcome = batch.encode_file(lambda: _codec(settings), inputs[0], output, threads=settings.threads,
                                            progress=progress, **rate)
            _warn_image_name(output)
            if as_json:
                print_out(json.dumps(_encoded_json(outcome)))
            else:
                settings.say(_summary(outcome, "encoded"))
                for line in outcome.details:
                    settings.say(line, 2)
            return
        plan = batch.plan(list(inputs), output, batch.SIC_SUFFIX,
                          lambda p: p.suffix.lower() in batch.IMAGE_SUFFIXES, recursive, what="image")
        codec = _codec(settings)
        threads = _file_threads(settings, jobs)

        def work(job: batch.Job) -> batch.Outcome:
            _mkdirs(job.target)
            return batch.encode_file(codec, job.source, job.target, threads=threads, **rate)

        _run_batch(settings, plan, work, jobs, force, what="encoded",
                   on_done=(lambda outcome: print_out(json.dumps(_encoded_json(outcome)))) if as_json else None)


@main.command(epilog=EPILOG, short_help="Decode SIC files into one or several images.")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True,
              help="Output image (.png .jpg .webp .tif .ppm .bmp; '-' = PNG on standard output), or a folder "
                   "for several inputs. With N samples: OUT-0.png ... OUT-{N-1}.png.")
@sample_options
@click.option("--quality", type=click.IntRange(1, 100), default=None,
              help="JPEG output quality (default 90).")
@click.option("--format", "out_format", type=click.Choice(sorted({s[1:] for s in OUTPUT_FORMATS})), default=None,
              help="Image format of the outputs in a folder (default png).")
@click.option("--strict", is_flag=True, help="Fail on a truncated or corrupt level instead of decoding before it.")
@max_pixels_option
@batch_options
@model_options
@click.pass_obj
def decode(settings: Settings, inputs: tuple[str, ...], output: str, samples: int, seed: int, spread: float,
           level: int | None, quality: int | None, out_format: str | None, strict: bool, max_pixels: int | None,
           recursive: bool, jobs: int, force: bool) -> None:
    """Decode SIC files into one or several images each. With several inputs or folders, -o names a
    folder and --format picks the image format."""
    options = dict(samples=samples, seed=seed, spread=spread, level=level, strict=strict, max_pixels=max_pixels,
                   quality=quality)
    with reported_errors(settings, inputs[0] if len(inputs) == 1 else None):
        if not batch.is_batch(list(inputs), output):
            if out_format is not None:
                raise CommandError("--format is for a folder of outputs; name the output file instead", EXIT_USAGE)
            if _kept(force, sample_paths(output, samples)):
                return
            with progress_display(settings) as progress:  # the model loads after the cheap checks
                outcome = batch.decode_file(lambda: _codec(settings), inputs[0], output, threads=settings.threads,
                                            progress=progress, **options)
            settings.say(_summary(outcome, "decoded"))  # one line, as encode's (-q: none)
            return
        suffix = "." + (out_format or "png")
        plan = batch.plan(list(inputs), output, suffix, lambda p: p.suffix.lower() == batch.SIC_SUFFIX, recursive,
                          what=".sic")
        codec = _codec(settings)
        threads = _file_threads(settings, jobs)

        def work(job: batch.Job) -> batch.Outcome:
            _mkdirs(job.target)
            return batch.decode_file(codec, job.source, job.target, threads=threads, **options)

        _run_batch(settings, plan, work, jobs, force, what="decoded",
                   exists=lambda job: any(os.path.lexists(p) for p in sample_paths(job.target, samples)))


@main.command(epilog=EPILOG_ONE, short_help="Cut a SIC file after a level (no re-encoding).")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output .sic file ('-' for standard output).")
@click.option("--level", type=click.IntRange(1, LEVELS), default=None, help="Keep levels 1..L.")
@click.option("--bytes", "max_bytes", type=click.IntRange(1), default=None,
              help="Largest prefix of at most B bytes (at least level 1).")
@click.option("--bpp", type=click.FloatRange(0, min_open=True), default=None,
              help="Largest prefix of at most R bits per pixel (at least level 1).")
@click.option("--at-least-one", is_flag=True,
              help="A --bytes/--bpp budget below level 1 keeps level 1 (with a warning) instead of failing.")
@max_pixels_option
@output_options
@click.pass_obj
def truncate(settings: Settings, input_path: str, output: str, level: int | None,
             max_bytes: int | None, bpp: float | None, at_least_one: bool, max_pixels: int | None) -> None:
    """Cut a SIC file after a level: a byte prefix, nothing is re-encoded."""
    from .container import pixel_limit
    from .stream import file_info
    from .stream import truncate as truncate_data

    with reported_errors(settings, input_path):
        if sum(x is not None for x in (level, max_bytes, bpp)) != 1:
            raise CommandError("give exactly one of --level, --bytes, --bpp", EXIT_USAGE)
        refuse_terminal(output)
        raw = read_sic_input(input_path, pixel_limit(max_pixels))  # bounded; the budget from the header
        data = truncate_data(raw, level=level, max_bytes=max_bytes, bpp=bpp, at_least_one=at_least_one,
                             max_pixels=max_pixels)
        write_output(output, data, source=input_path)
        info = file_info(data, max_pixels)
        settings.say(f"{display_name(output, output=True)}: kept {len(info.levels)}/{info.model_levels} levels, "
                     f"{len(data)} bytes, {len(data) * 8 / (info.width * info.height):.4f} bpp")


@main.command(epilog=EPILOG_ONE, short_help="Show a SIC file's size, metadata and levels.")
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--strict", is_flag=True, help="Exit 4 on a file cut inside a level too (a corrupt level always does).")
@max_pixels_option
@output_options
@click.pass_obj
def info(settings: Settings, input_path: str, as_json: bool, strict: bool, max_pixels: int | None) -> None:
    """Show a SIC file's size, model id, metadata and per-level bytes and bpp (no decoding). The
    report is printed for a damaged file too; then a corrupt level is an error (exit 4), and so is
    a file cut inside a level with --strict (else a warning)."""
    from .container import pixel_limit
    from .errors import CorruptError, TruncatedError
    from .stream import file_info

    with reported_errors(settings, input_path):
        report = file_info(read_sic_input(input_path, pixel_limit(max_pixels)), max_pixels)
        _print_info(report, as_json)
        if report.corrupt_level is not None:
            raise CorruptError(f"level {report.corrupt_level} is corrupt ({report.corrupt_reason}); "
                               f"the {len(report.levels)} levels before it are intact")
        if report.truncated:
            message = f"file is truncated inside level {len(report.levels) + 1}"
            if strict:
                raise TruncatedError(message)
            warnings.warn(message, _sicc_warning(), stacklevel=1)


def _print_info(report, as_json: bool) -> None:
    """The report of `sicc info`: JSON, or a line per level."""
    if as_json:
        print_out(json.dumps(report.to_dict(), indent=2))
        return
    kind = "gray" if report.grayscale else "colour"
    metadata = ", ".join(x for x, v in (("ICC profile", report.has_icc_profile), ("EXIF", report.has_exif)) if v)
    print_out(f"SIC v1, {report.width}x{report.height} {kind}, model {report.model_id}, "
              f"{len(report.levels)}/{report.model_levels} levels, {report.file_bytes} bytes")
    print_out(f"  metadata: {metadata or 'none'}")
    print_out(f"  base (header, metadata, hyperprior): {report.base_bytes} bytes")
    for lv in report.levels:
        print_out(f"  level {lv.index:2d}: {lv.bytes:8d} bytes, cumulative {lv.cumulative_bytes:8d} bytes, "
                  f"{lv.cumulative_bpp:.4f} bpp")
    if not report.levels:
        print_out("  no level: decoding it samples the whole image (noise)")
    if report.truncated:
        print_out(f"  truncated inside level {len(report.levels) + 1}")
    if report.corrupt_level is not None:
        print_out(f"  level {report.corrupt_level} is corrupt ({report.corrupt_reason})")


class LevelList(click.ParamType):
    """A comma-separated list of levels, each in 1..LEVELS: ``1,2,4,8,16``."""

    name = "L1,L2,..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            levels = [int(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of levels", param, ctx)
        if not levels or any(not 1 <= lv <= LEVELS for lv in levels):
            self.fail(f"{value!r}: levels must be in 1..{LEVELS}", param, ctx)
        return sorted(set(levels))


@main.command(epilog=EPILOG_ONE, short_help="A labelled contact sheet of levels and samples.")
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output image (.png .jpg .webp ...).")
@click.option("--levels", "levels", type=LevelList(), default=None,
              help=f"Rows: the levels to show (default 1,2,4,8,... and the file's last, at most {LEVELS}).")
@click.option("--samples", type=click.IntRange(1, 16), default=3, show_default=True,
              help="Columns: synonymous samples per level.")
@click.option("--seed", type=SeedRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the samples.")
@click.option("--spread", type=click.FloatRange(0, 16), default=None, help=SPREAD_HELP)
@click.option("--original", type=click.Path(dir_okay=False), default=None,
              help="The source image, shown first.")
@click.option("--tile-width", type=click.IntRange(16, 4096), default=None,
              help="Scale every picture to this width (default: the image's own).")
@max_pixels_option
@model_options
@click.pass_obj
def montage(settings: Settings, input_path: str, output: str, levels: list[int] | None, samples: int, seed: int,
            spread: float, original: str | None, tile_width: int | None, max_pixels: int | None) -> None:
    """Decode a SIC file at several levels, several samples each, into one labelled contact sheet
    (level, bpp, sample seed), beside the original if given."""
    from .container import pixel_limit
    from .image_io import open_image
    from .contact_sheet import contact_sheet

    with reported_errors(settings, input_path):
        fmt = output_format(output)
        refuse_terminal(output)
        raw = read_sic_input(input_path, pixel_limit(max_pixels))  # bounded; the budget from the header
        source = None
        if original is not None:
            with reported_errors(settings, original):
                source = open_image(original).convert("RGB")
        start = time.perf_counter()
        sheet = contact_sheet(lambda: _codec(settings), raw, levels=levels, samples=samples, seed=seed, spread=spread, original=source,
                              tile_width=tile_width, threads=settings.threads, max_pixels=max_pixels)
        write_output(output, image_bytes(sheet, fmt, name=output), source=input_path)
        settings.say(f"{display_name(output, output=True)}: {sheet.width}x{sheet.height} contact sheet, "
                     f"{time.perf_counter() - start:.2f} s", 1)


# -- many machines (Ray Data; sicc/cluster.py) ----------------------------------------------
@main.group(short_help="Encode or decode many files on a Ray cluster.",
            context_settings={"help_option_names": ["-h", "--help"]})
def cluster() -> None:
    """Many files on many machines with Ray Data (pip install "sicc[ray]"; docs/cluster.md):
    the outputs of `sicc encode`/`sicc decode`
    (same names, folders and bytes), written by an actor pool with one model per actor, and a
    results table (one row per input; DST/results.parquet). A rerun skips the outputs that exist
    and parse. Inputs: files, folders, globs, or URIs pyarrow reads (s3://...)."""


def cluster_options(command):
    for option in (
        click.option("--address", default=None,
                     help="Ray cluster to run on (ray://HOST:10001, or HOST:6379 on a node of it); "
                          "default: a local Ray started for the job, with every CPU."),
        click.option("--actors", type=click.IntRange(1), default=None,
                     help="Workers, each with the model loaded once (default: the cluster's CPUs / --threads)."),
        click.option("--actor-memory", type=click.IntRange(1), default=None, metavar="MB",
                     help="Memory reserved per worker for Ray's scheduler (docs/cluster.md: sizing)."),
        click.option("--results", default=None, help=f"Where the results table goes (default DST/{'results.parquet'})."),
        click.option("-r", "--recursive", is_flag=True, help="Take the files of sub-folders too."),
        click.option("-f", "--force", is_flag=True, help="Redo outputs that exist (they are skipped if they parse)."),
    ):
        command = option(command)
    return command


def _cluster_run(settings: Settings, what: str, call, **kwargs) -> None:
    from . import cluster as ray_jobs

    if settings.weights:  # a damaged or missing weights file stops here, before Ray starts
        _codec(settings)
        kwargs["weights"] = str(Path(settings.weights).resolve())
    report = call(threads=settings.threads or 1, progress=not settings.quiet and sys.stderr.isatty(), **kwargs)
    if report.failed:
        more = f" (and {report.failed - 1} more failures)" if report.failed > 1 else ""
        click.echo(f"sicc: error: {one_line(report.first_error)}{more}; see {report.results}", err=True)
    settings.say(ray_jobs.summary(report, what))
    if report.exit_code:
        sys.exit(report.exit_code)


@cluster.command("encode", epilog=EPILOG, short_help="Encode images into SIC files on Ray.")
@click.argument("inputs", metavar="SRC...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output folder (a local path or a URI).")
@rate_options
@max_pixels_option
@cluster_options
@model_options
@click.pass_obj
def cluster_encode(settings: Settings, inputs: tuple[str, ...], output: str, levels: int | None,
                   max_bytes: int | None, bpp: float | None, strip: bool, at_least_one: bool,
                   max_pixels: int | None, address: str | None,
                   actors: int | None, actor_memory: int | None, results: str | None, recursive: bool,
                   force: bool) -> None:
    """Encode images into SIC files on a Ray cluster, as `sicc encode SRC... -o DST` does."""
    from . import cluster as ray_jobs

    with reported_errors(settings):
        _one_rate(levels, max_bytes, bpp)
        _cluster_run(settings, "encoded", ray_jobs.encode, inputs=list(inputs), output=output, levels=levels,
                     bpp=bpp, max_bytes=max_bytes, strip=strip, at_least_one=at_least_one, max_pixels=max_pixels,
                     recursive=recursive,
                     force=force, actors=actors, actor_memory=actor_memory and actor_memory << 20,
                     address=address, results=results)


@cluster.command("decode", epilog=EPILOG, short_help="Decode SIC files into images on Ray.")
@click.argument("inputs", metavar="SRC...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output folder (a local path or a URI).")
@sample_options
@click.option("--quality", type=click.IntRange(1, 100), default=None, help="JPEG output quality (default 90).")
@click.option("--format", "out_format", type=click.Choice(sorted({s[1:] for s in OUTPUT_FORMATS})), default="png",
              show_default=True, help="Image format of the outputs.")
@click.option("--strict", is_flag=True, help="Fail on a truncated or corrupt level instead of decoding before it.")
@max_pixels_option
@cluster_options
@model_options
@click.pass_obj
def cluster_decode(settings: Settings, inputs: tuple[str, ...], output: str, samples: int, seed: int, spread: float,
                   level: int | None, quality: int | None, out_format: str, strict: bool, max_pixels: int | None,
                   address: str | None, actors: int | None, actor_memory: int | None, results: str | None,
                   recursive: bool, force: bool) -> None:
    """Decode SIC files into images on a Ray cluster, as `sicc decode SRC... -o DST` does."""
    from . import cluster as ray_jobs

    with reported_errors(settings):
        _cluster_run(settings, "decoded", ray_jobs.decode, inputs=list(inputs), output=output, samples=samples,
                     seed=seed, spread=spread, level=level, strict=strict, max_pixels=max_pixels, quality=quality,
                     format=out_format, recursive=recursive, force=force, actors=actors,
                     actor_memory=actor_memory and actor_memory << 20, address=address, results=results)


def _handle_sigterm() -> None:
    """SIGTERM raises :class:`Terminated` in the main thread, unless it is ignored (a parent chose
    so) or this is not the main thread."""
    import signal
    import threading

    from .fileio import raise_terminated

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_terminated)


def run(standalone: bool = True) -> None:
    """Console-script entry: click's own usage errors exit 2, anything unforeseen exits 1 in one line.

    ``standalone`` (a ``sicc`` process; tests calling this in their own process pass False):
    SIGTERM is handled like Ctrl-C (clean up, then exit 143), and once the command has finished,
    SIGINT and SIGTERM are held back until the process is gone, so a signal that arrives after the
    outputs are written cannot turn a finished command into a killed one."""
    if standalone:
        _handle_sigterm()
    try:
        _run_command()
    finally:
        if standalone:
            _hold_late_signals()


def _hold_late_signals() -> None:
    """Ignore SIGINT and SIGTERM from here on. Ignoring is process-wide (a signal sent to the process
    may be delivered to any thread, and onnxruntime's and the tile workers' threads do not block it),
    and Python's finalization leaves an ignored signal ignored, where it resets a Python handler to
    the default action, which would kill the finished process (exit -15)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _run_command() -> None:
    try:
        main.main(standalone_mode=False, prog_name="sicc")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as exc:  # bare `sicc`: the help, as click does
        exc.show()
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:  # usage errors: one line too, with where to look
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, EXIT_USAGE)
    except click.exceptions.Abort:
        _fail("interrupted", EXIT_INTERRUPTED)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except QuietExit:
        _quiet_exit()
    except BrokenPipeError:  # help or version text into a closed pipe
        _quiet_exit()
    except SystemExit:
        raise
    except BaseException as exc:  # last resort: one line, never a traceback
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)


if __name__ == "__main__":
    run()
