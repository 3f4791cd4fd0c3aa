"""The ``sicc`` command: a thin shell over the Python API.

Exit codes (also in README.md and ``sicc --help``):
  0 success; 1 internal error; 2 bad arguments; 3 cannot read input;
  4 invalid, corrupt or unsupported input data; 5 cannot write output; 130 interrupted.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import click

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_READ, EXIT_DATA, EXIT_WRITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

EPILOG = """\b
Exit codes: 0 ok, 1 internal error, 2 bad arguments, 3 cannot read input,
4 invalid/corrupt/unsupported data, 5 cannot write output, 130 interrupted.
"""

OUTPUT_FORMATS = {".png": "PNG", ".ppm": "PPM", ".pnm": "PPM", ".tif": "TIFF", ".tiff": "TIFF",
                  ".webp": "WEBP", ".bmp": "BMP"}


class CommandError(Exception):
    """A one-line error for the user, with its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Settings:
    def __init__(self, quiet: bool, verbose: int, weights: str | None, threads: int | None = None):
        self.quiet, self.verbose, self.weights, self.threads = quiet, verbose, weights, threads

    def say(self, message: str, level: int = 1) -> None:
        if not self.quiet and self.verbose >= level:
            click.echo(message, err=True)


# -- input / output ------------------------------------------------------------------
def read_input(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_READ) from None


def _same_file(a: str, b: str) -> bool:
    try:
        return a != "-" and b != "-" and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def write_output(path: str, data: bytes, source: str | None = None) -> None:
    """Write atomically: a temporary file in the target folder, then rename.

    A failure or Ctrl-C leaves either the old file or nothing, never a partial one.
    """
    write_outputs([path], [data], source)


def write_outputs(paths: list[str], contents: list[bytes], source: str | None = None) -> None:
    """Write several outputs as a unit: every one is first staged as a complete temporary file
    beside its target, then all are renamed. A failure or Ctrl-C removes the temporary files and
    the outputs this call had created, so N samples are written whole or not at all."""
    for path in paths:
        if source and _same_file(source, path):
            raise CommandError(f"refusing to overwrite the input file {path}", EXIT_USAGE)
    if paths == ["-"]:
        try:
            sys.stdout.buffer.write(contents[0])
            sys.stdout.buffer.flush()
        except OSError as exc:
            raise CommandError(f"cannot write to standard output: {exc.strerror or exc}", EXIT_WRITE) from None
        return
    staged: list[tuple[str, str, bool]] = []  # (temporary file, target, target existed before)
    created: list[str] = []
    current = paths[0]
    done = False
    try:
        for current, data in zip(paths, contents):
            staged.append((_stage(Path(current), data), current, os.path.lexists(current)))
        for tmp_name, current, existed in staged:
            os.replace(tmp_name, current)
            if not existed:
                created.append(current)
        done = True
    except OSError as exc:
        raise CommandError(f"cannot write {current}: {exc.strerror or exc}", EXIT_WRITE) from None
    finally:
        if not done:
            for name in [tmp for tmp, _, _ in staged] + created:
                if os.path.lexists(name):
                    os.unlink(name)


def _stage(target: Path, data: bytes) -> str:
    """A complete, synced temporary copy of ``data`` beside ``target``, with the permissions the
    output should get (mkstemp's are 0600)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _output_mode(target))
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp_name)
        raise
    return tmp_name


def _output_mode(target: Path) -> int:
    """The permissions of the file being replaced, else what open() would give: 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


def print_out(text: str) -> None:
    """A line on standard output; a closed pipe or a full disk is a write error (exit 5), not
    click's silent exit 1."""
    try:
        click.echo(text)
    except OSError as exc:
        raise CommandError(f"cannot write to standard output: {exc.strerror or exc}", EXIT_WRITE) from None


def _image_bytes(image, fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    params = {}
    if fmt in ("PNG", "TIFF", "WEBP") and image.info.get("icc_profile"):
        params["icc_profile"] = image.info["icc_profile"]
    if fmt in ("PNG", "WEBP", "TIFF") and image.info.get("exif"):
        params["exif"] = image.info["exif"]
    if fmt == "WEBP":
        params["lossless"] = True
    if fmt == "PNG":
        params["compress_level"] = 3  # 3x faster than Pillow's default 6, a few % larger
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _output_format(path: str) -> str:
    if path == "-":
        return "PNG"
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise CommandError(f"unknown output format '{suffix or path}' (use {', '.join(sorted(OUTPUT_FORMATS))})",
                           EXIT_USAGE)
    return OUTPUT_FORMATS[suffix]


def sample_paths(path: str, samples: int) -> list[str]:
    """``out.png`` for one sample; ``out-0.png`` ... ``out-{N-1}.png`` for N."""
    if samples == 1:
        return [path]
    if path == "-":
        raise CommandError("several samples cannot all go to standard output", EXIT_USAGE)
    p = Path(path)
    return [str(p.with_name(f"{p.stem}-{k}{p.suffix}")) for k in range(samples)]


@contextmanager
def reported_errors(settings: Settings):
    """Map every failure to one stderr line and its exit code; warnings to one line each."""
    from .errors import InputImageError, SiccError

    def show_warning(message, category, filename, lineno, file=None, line=None):
        if not settings.quiet:
            click.echo(f"sicc: warning: {one_line(message)}", err=True)

    warnings.showwarning = show_warning
    try:
        yield
    except CommandError as exc:
        _fail(str(exc), exc.code)
    except InputImageError as exc:
        _fail(str(exc), EXIT_READ)
    except SiccError as exc:
        _fail(str(exc), EXIT_DATA)
    except ValueError as exc:
        _fail(str(exc), EXIT_USAGE)
    except MemoryError:
        _fail("out of memory", EXIT_INTERNAL)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)


def one_line(message) -> str:
    """Message text on one line: newlines become spaces, other control characters are escaped."""
    text = " ".join(str(message).splitlines())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fail(message: str, code: int) -> None:
    click.echo(f"sicc: error: {one_line(message)}", err=True)
    sys.exit(code)


def _codec(settings: Settings):
    """The model: a file that cannot be read exits 3, a damaged or foreign one exits 4."""
    from .codec import Codec
    from .errors import WeightsError

    path = settings.weights or os.environ.get("SICC_WEIGHTS")
    try:
        return Codec.load(path)
    except OSError as exc:
        raise CommandError(f"cannot read model weights {path or '(shipped)'}: {exc.strerror or exc}",
                           EXIT_READ) from None
    except WeightsError as exc:
        raise CommandError(f"invalid model weights {path or '(shipped)'}: {exc}", EXIT_DATA) from None


def _progress(settings: Settings):
    """A progress line on stderr for long images, only on a terminal and without --quiet."""
    if settings.quiet or not sys.stderr.isatty():
        return None
    shown = {"at": 0.0}

    def show(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - shown["at"] < 0.2:
            return
        shown["at"] = now
        click.echo(f"\rsicc: {stage} {done}/{total}\x1b[K", err=True, nl=done == total and stage == "synthesis")

    return show


# -- commands ------------------------------------------------------------------------
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
    help="Refuse images larger than this many pixels (default 268435456).")
"""One pixel limit for encode and decode (sicc.MAX_IMAGE_PIXELS when not given)."""


def common_options(command):
    """-q/-v/--threads/--weights work after the subcommand too, as in `sicc encode -v`."""
    for option in (
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
                     help="Print nothing but errors."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_add_verbose,
                     help="Print sizes and timings."),
        click.option("--threads", type=click.IntRange(1, 256), expose_value=False, callback=_set_threads,
                     help="Tiles transformed in parallel (default: CPUs, at most 4); never changes the pixels."),
        click.option("--weights", type=click.Path(dir_okay=False), expose_value=False, callback=_set_weights,
                     help="Model weights file (default: the shipped model)."),
    ):
        command = option(command)
    return command


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", count=True, help="Print sizes and timings (repeat for more).")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="Tiles transformed in parallel (default: CPUs, at most 4); never changes the pixels.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, envvar="SICC_WEIGHTS",
              help="Model weights file (default: the shipped model).")
@click.version_option(package_name="sicc", prog_name="sicc")
@click.pass_context
def main(ctx: click.Context, quiet: bool, verbose: int, threads: int | None, weights: str | None) -> None:
    """Progressive synonymous image codec: encode, truncate, decode one or many reconstructions."""
    ctx.obj = Settings(quiet, verbose, weights, threads)


@main.command(epilog=EPILOG)
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output .sic file ('-' for standard output).")
@click.option("--levels", type=click.IntRange(0, 255), default=None, help="Write only the first N levels.")
@click.option("--strip", is_flag=True, help="Do not carry the ICC profile and EXIF over.")
@max_pixels_option
@common_options
@click.pass_obj
def encode(settings: Settings, input_path: str, output: str, levels: int | None, strip: bool,
           max_pixels: int | None) -> None:
    """Encode a PNG/JPEG/WebP/TIFF image (or '-') into a SIC file."""
    import io

    with reported_errors(settings):
        raw = read_input(input_path)
        codec = _codec(settings)
        if levels is not None and levels > codec.config.levels:
            raise CommandError(f"--levels must be at most {codec.config.levels}", EXIT_USAGE)
        start = time.perf_counter()
        data = codec.encode(io.BytesIO(raw), levels=levels, keep_metadata=not strip, max_pixels=max_pixels,
                            threads=settings.threads, progress=_progress(settings))
        write_output(output, data, source=input_path)
        _report_encode(settings, data, time.perf_counter() - start)


def _report_encode(settings: Settings, data: bytes, seconds: float) -> None:
    from .stream import file_info

    info = file_info(data)
    settings.say(f"{info.width}x{info.height}, {len(info.levels)} levels, {len(data)} bytes, "
                 f"{len(data) * 8 / (info.width * info.height):.4f} bpp, {seconds:.2f} s")


@main.command(epilog=EPILOG)
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True,
              help="Output image (.png, .ppm, .tif, .webp, .bmp; '-' = PNG on stdout). "
                   "With N samples: OUT-0.png ... OUT-{N-1}.png.")
@click.option("--samples", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Number of synonymous reconstructions.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the sampled details; same seed, same pixels.")
@click.option("--spread", type=click.FloatRange(0, 16), default=2.0, show_default=True,
              help="Detail sampling spread s in round(mu + s*u); 0 gives the deterministic mean decode.")
@click.option("--level", type=click.IntRange(0, 255), default=None,
              help="Decode from the first L levels only (default: all levels in the file).")
@click.option("--strict", is_flag=True, help="Fail on a truncated or corrupt level instead of decoding before it.")
@max_pixels_option
@common_options
@click.pass_obj
def decode(settings: Settings, input_path: str, output: str, samples: int, seed: int, spread: float,
           level: int | None, strict: bool, max_pixels: int | None) -> None:
    """Decode a SIC file into one or several images."""
    with reported_errors(settings):
        fmt = _output_format(output)
        paths = sample_paths(output, samples)
        raw = read_input(input_path)
        codec = _codec(settings)
        start = time.perf_counter()
        images = codec.decode(raw, samples=samples, seed=seed, spread=spread, level=level,
                              strict=strict, max_pixels=max_pixels, threads=settings.threads,
                              progress=_progress(settings))
        encoded = [_image_bytes(image, fmt) for image in images]
        write_outputs(paths, encoded, source=input_path)
        settings.say(f"decoded {len(images)} image(s) {images[0].width}x{images[0].height} "
                     f"in {time.perf_counter() - start:.2f} s")


@main.command(epilog=EPILOG)
@click.argument("input_path", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output .sic file ('-' for standard output).")
@click.option("--level", type=click.IntRange(0, 255), default=None, help="Keep levels 1..L.")
@click.option("--bytes", "max_bytes", type=click.IntRange(0), default=None, help="Largest prefix of at most B bytes.")
@click.option("--bpp", type=click.FloatRange(0), default=None, help="Largest prefix of at most R bits per pixel.")
@common_options
@click.pass_obj
def truncate(settings: Settings, input_path: str, output: str, level: int | None,
             max_bytes: int | None, bpp: float | None) -> None:
    """Cut a SIC file after a level (a byte prefix: nothing is re-encoded)."""
    from .stream import file_info
    from .stream import truncate as truncate_data

    with reported_errors(settings):
        if sum(x is not None for x in (level, max_bytes, bpp)) != 1:
            raise CommandError("give exactly one of --level, --bytes, --bpp", EXIT_USAGE)
        raw = read_input(input_path)
        data = truncate_data(raw, level=level, max_bytes=max_bytes, bpp=bpp)
        write_output(output, data, source=input_path)
        info = file_info(data)
        settings.say(f"kept {len(info.levels)} levels, {len(data)} bytes, "
                     f"{len(data) * 8 / (info.width * info.height):.4f} bpp")


@main.command(epilog=EPILOG)
@click.argument("input_path", metavar="INPUT")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@common_options
@click.pass_obj
def info(settings: Settings, input_path: str, as_json: bool) -> None:
    """Show a SIC file's size, model id and per-level bytes and bpp (no decoding)."""
    from .stream import file_info

    with reported_errors(settings):
        data = read_input(input_path)
        report = file_info(data)
        if as_json:
            print_out(json.dumps(report.to_dict(), indent=2))
            return
        print_out(f"SIC v1, {report.width}x{report.height}, model {report.model_id}, "
                   f"{len(report.levels)}/{report.model_levels} levels, {report.file_bytes} bytes")
        print_out(f"  base (header, metadata, hyperprior): {report.base_bytes} bytes")
        for lv in report.levels:
            print_out(f"  level {lv.index:2d}: {lv.bytes:8d} bytes, cumulative {lv.cumulative_bytes:8d} bytes, "
                       f"{lv.cumulative_bpp:.4f} bpp")
        if report.truncated:
            print_out(f"  truncated inside level {len(report.levels) + 1}")
        if report.corrupt_level is not None:
            print_out(f"  level {report.corrupt_level} is corrupt")


def run() -> None:
    """Console-script entry: click's own usage errors exit 2, anything unforeseen exits 1 in one line."""
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
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except BaseException as exc:  # last resort: one line, never a traceback
        _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL)


if __name__ == "__main__":
    run()
