"""Files for the command-line tools: reading inputs, encoding output images, atomic writes.

Shared by every ``sicc`` command and by batch mode (``sicc/batch.py``), as libjxl's
``tools/file_io`` is shared by cjxl and djxl; ``cli.py`` only parses flags and calls these.
Every failure is a :class:`CommandError` that carries its exit code.
"""

from __future__ import annotations

import fcntl
import io
import os
import signal
import stat
import struct
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

from .errors import SiccWarning

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_READ, EXIT_DATA, EXIT_WRITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

OUTPUT_FORMATS = {".png": "PNG", ".ppm": "PPM", ".pnm": "PPM", ".pgm": "PPM", ".tif": "TIFF", ".tiff": "TIFF",
                  ".webp": "WEBP", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG"}
"""Decode's output formats, by file suffix."""

METADATA_FORMATS = {"PNG", "TIFF", "WEBP", "JPEG"}
"""Output formats that can hold an ICC profile and EXIF; the others are written without them."""

DEFAULT_JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 1
"""zlib level of written PNGs: a decoded Kodak image takes 49 ms at 1, 70 ms at 3 and 186 ms at
Pillow's default 6, for files 1.5% and 6% larger than at 3 and 6 (a PNG from djxl is larger still)."""

_TIFF_STRUCTURE_TAGS = frozenset({
    0x00FE, 0x00FF, 0x0100, 0x0101, 0x0102, 0x0103, 0x0106, 0x0111, 0x0115, 0x0116, 0x0117, 0x011A, 0x011B,
    0x011C, 0x0128, 0x0140, 0x0142, 0x0143, 0x0144, 0x0145, 0x0152, 0x0153, 0x0200, 0x0201, 0x0202,
})
"""Tags that describe a TIFF file's own pixels (size, strips, compression): an EXIF block's copies of
them would contradict the image Pillow writes, so they are removed before a TIFF gets the EXIF."""


class CommandError(Exception):
    """A one-line error for the user, with its exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class QuietExit(Exception):
    """Standard output was closed by its reader (``sicc info x.sic | head -1``): stop quietly, as
    Unix tools do, with exit 0."""


# -- reading -------------------------------------------------------------------------------
IMAGE_BYTES_PER_PIXEL = 16
"""Most bytes an image file spends per pixel (uncompressed 32-bit float RGBA): with
``IMAGE_METADATA_BYTES``, the cap on an image read from a pipe or a device, from the pixel budget."""
IMAGE_METADATA_BYTES = 64 << 20


def read_input(path: str, max_pixels: int | None = None) -> bytes:
    """The bytes of an image to encode from ``path`` ('-': standard input), read in pieces, so
    Ctrl-C works. A regular file is read whole (its size bounds it). A pipe or a device (stdin,
    /dev/zero) must start with the signature of an image format Pillow knows, checked from its
    first 16 bytes, and is read up to a cap from the pixel budget ``max_pixels``."""
    from .container import read_up_to
    from .errors import InputImageError, InputTooLargeError

    try:
        with (open(path, "rb") if path != "-" else _borrowed(sys.stdin.buffer)) as handle:
            try:
                regular = stat.S_ISREG(os.fstat(handle.fileno()).st_mode)
            except (OSError, ValueError):  # no file descriptor (a test's stream): a stream
                regular = False
            if regular:
                return read_up_to(handle, 1 << 62)
            head = read_up_to(handle, 16)
            if not _known_image_signature(head):
                raise InputImageError("not a readable image (unknown or damaged format)")
            cap = None if max_pixels is None else max_pixels * IMAGE_BYTES_PER_PIXEL + IMAGE_METADATA_BYTES
            data = head + read_up_to(handle, (1 << 62) if cap is None else cap + 1 - len(head))
            if cap is not None and len(data) > cap:
                raise InputTooLargeError(f"image data is larger than an image within the pixel budget of "
                                         f"{max_pixels} can be (over {cap} bytes; raise it with --max-pixels)")
            return data
    except IsADirectoryError:
        raise CommandError(f"cannot read {path}: it is a folder (give files, or a folder with -o DIR)",
                           EXIT_READ) from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_READ) from None


@contextmanager
def _borrowed(handle):
    """``handle`` as a context manager that does not close it (standard input)."""
    yield handle


def _known_image_signature(prefix: bytes) -> bool:
    """Whether a Pillow format that has a signature recognises ``prefix`` (Pillow's own test, on
    the first 16 bytes as Image.open reads them)."""
    from PIL import Image

    Image.init()
    return any(accept(prefix) for _, accept in Image.OPEN.values() if accept is not None)


def read_sic_input(path: str, max_pixels: int | None = None, data: bytes | None = None) -> bytes:
    """A SIC file from ``path`` ('-': standard input), read in bounded pieces by
    ``container.read``: the signature and header (with the pixel budget ``max_pixels``, when
    given) are checked from the first 32 bytes, the rest is read up to what the header allows.
    An image given instead gets a hint at `sicc encode`. ``data``: the file's bytes, already read
    (by Ray, in ``sicc.cluster``), get the same checks and messages."""
    from .container import read
    from .errors import NotSicError

    try:
        return read(data if data is not None else sys.stdin.buffer if path == "-" else path, max_pixels)
    except NotSicError as exc:
        fmt = sniff_image_format(exc.head)
        if fmt is None:
            raise
        raise NotSicError(f"{display_name(path)} is a {fmt} image, not a SIC file; did you mean `sicc encode`?") from None
    except IsADirectoryError:
        raise CommandError(f"cannot read {path}: it is a folder (give files, or a folder with -o DIR)",
                           EXIT_READ) from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_READ) from None


def sniff_image_format(data: bytes) -> str | None:
    """The image format Pillow recognises in ``data`` ('PNG', 'JPEG', ...), or None: used to tell a
    user who gave an image to a command that wants a SIC file what they probably meant."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # any failure simply means "not an image we know"
        return None


def display_name(path: str, output: bool = False) -> str:
    """A path for messages; '-' is standard input (or output)."""
    return ("standard output" if output else "standard input") if path == "-" else str(path)


# -- output images -------------------------------------------------------------------------
def output_format(path: str, quality: int | None = None) -> str:
    """The image format of an output path (PNG for '-'); ``quality`` only for JPEG."""
    if path == "-":
        fmt = "PNG"
    else:
        suffix = Path(path).suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise CommandError(f"unknown output format '{suffix or path}' "
                               f"(use {', '.join(sorted(OUTPUT_FORMATS))})", EXIT_USAGE)
        fmt = OUTPUT_FORMATS[suffix]
    if quality is not None and fmt != "JPEG":
        raise CommandError(f"--quality applies to JPEG output only, not {fmt}", EXIT_USAGE)
    return fmt


def image_bytes(image, fmt: str, quality: int | None = None, name: str = "output") -> bytes:
    """``image`` encoded as ``fmt``, with its ICC profile and EXIF where the format can hold them
    and they are valid for it; metadata that cannot be written is dropped with a warning, never an
    error (the pixels are what the user asked for)."""
    icc = image.info.get("icc_profile") or None
    exif = image.info.get("exif") or None
    if (icc or exif) and fmt not in METADATA_FORMATS:
        what = " and ".join(x for x, v in (("ICC profile", icc), ("EXIF", exif)) if v)
        warnings.warn(f"{name}: {fmt} cannot hold the {what}; written without", SiccWarning, stacklevel=2)
        icc = exif = None
    if exif:
        exif = _exif_for(exif, fmt, name)
    params: dict = {}
    if fmt == "WEBP":
        params["lossless"] = True
    elif fmt == "PNG":
        params["compress_level"] = PNG_COMPRESS_LEVEL
    elif fmt == "JPEG":
        params["quality"] = DEFAULT_JPEG_QUALITY if quality is None else quality
    metadata = {k: v for k, v in (("icc_profile", icc), ("exif", exif)) if v}
    try:
        return _save(image, fmt, {**params, **metadata})
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        if not metadata:
            raise CommandError(f"cannot encode {name} as {fmt}: {exc}", EXIT_WRITE) from None
        dropped = " and ".join({"icc_profile": "ICC profile", "exif": "EXIF"}[k] for k in metadata)
        warnings.warn(f"{name}: {fmt} refused the metadata ({exc}); written without the {dropped}",
                      SiccWarning, stacklevel=2)
    try:
        return _save(image, fmt, params)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot encode {name} as {fmt}: {exc}", EXIT_WRITE) from None


def _save(image, fmt: str, params: dict) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def _exif_for(raw: bytes, fmt: str, name: str) -> bytes | None:
    """The EXIF block parsed and re-serialised for ``fmt``, or None (with a warning) when it does
    not parse cleanly; for TIFF without the tags that describe pixel layout."""
    from PIL import Image

    exif = Image.Exif()
    problem = _exif_structure_problem(raw)
    if problem is None:
        try:
            exif.load(raw)
        except Exception as exc:  # Pillow raises SyntaxError, struct.error, ValueError... on bad blocks
            problem = str(exc) or type(exc).__name__
    if problem is None and len(exif) != _exif_tag_count(raw):  # Pillow skips the tags it cannot read
        problem = f"{_exif_tag_count(raw) - len(exif)} of its {_exif_tag_count(raw)} tags cannot be read"
    if problem:
        warnings.warn(f"{name}: EXIF dropped: it is damaged ({problem.strip()})", SiccWarning, stacklevel=3)
        return None
    if fmt == "TIFF":
        for tag in _TIFF_STRUCTURE_TAGS & set(exif):
            del exif[tag]
    return exif.tobytes()


def _exif_tiff(raw: bytes) -> tuple[bytes, str]:
    """The TIFF structure of an EXIF block (after an optional ``Exif\\0\\0``) and its byte order."""
    data = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    return data, "<" if data[:2] == b"II" else ">"


def _exif_tag_count(raw: bytes) -> int:
    data, order = _exif_tiff(raw)
    (offset,) = struct.unpack_from(order + "I", data, 4)
    return struct.unpack_from(order + "H", data, offset)[0]


def _exif_structure_problem(raw: bytes) -> str | None:
    """Why an EXIF block is not a readable first directory, or None. Checked here rather than from
    Pillow's warnings: catching warnings is process-wide, and batch decodes run on threads."""
    data, order = _exif_tiff(raw)
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return "not a TIFF-structured block"
    if len(data) < 8:
        return "it ends inside its header"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset < 8 or offset + 2 > len(data):
        return "its first directory lies outside it"
    count = struct.unpack_from(order + "H", data, offset)[0]
    if count == 0:
        return "it holds no tags"
    if offset + 2 + 12 * count > len(data):
        return f"it declares {count} tags but is cut short"
    return None


# -- writing -------------------------------------------------------------------------------
def _same_file(a: str, b: str) -> bool:
    try:
        return a != "-" and b != "-" and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_terminal(path: str) -> None:
    """Binary data is never written to a terminal (exit 2), as gzip and cjxl refuse."""
    if path == "-" and sys.stdout.isatty():
        raise CommandError("refusing to write binary data to a terminal; redirect it (> out) or pipe it",
                           EXIT_USAGE)


def check_output_folders(paths: list[str]) -> None:
    """An output whose folder is missing or not writable is refused before any work (exit 5)."""
    for path in paths:
        if path == "-":
            continue
        folder = Path(path).parent
        if not folder.is_dir():
            raise CommandError(f"cannot write {display_name(path, output=True)}: No such file or directory",
                               EXIT_WRITE)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CommandError(f"cannot write {display_name(path, output=True)}: Permission denied", EXIT_WRITE)


def write_stdout(data: bytes) -> None:
    """``data`` on standard output; a reader that went away ends the command quietly."""
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise QuietExit() from None
    except OSError as exc:
        raise CommandError(f"cannot write to standard output: {exc.strerror or exc}", EXIT_WRITE) from None


def write_output(path: str, data: bytes, source: str | None = None) -> None:
    """Write atomically: a temporary file in the target folder, then rename.

    A failure or Ctrl-C leaves either the old file or nothing, never a partial one.
    """
    write_outputs([path], [data], source)


def write_outputs(paths: list[str], contents: list[bytes], source: str | None = None) -> None:
    """Write several outputs as a unit: every one is first staged as a complete temporary file
    beside its target, then all are renamed while holding an exclusive lock on their folder. A failure or Ctrl-C removes the temporary files and the outputs this
    call had created, so N samples are written whole or not at all; the lock makes two processes
    writing the same names leave one whole set, never a mix of both."""
    for path in paths:
        if source and _same_file(source, path):
            raise CommandError(f"refusing to overwrite the input file {path}", EXIT_USAGE)
    if paths == ["-"]:
        write_stdout(contents[0])
        return
    staged: list[str] = []
    current = paths[0]
    try:
        for current, data in zip(paths, contents):
            staged.append(_stage(Path(current), data))
        with _set_lock(paths), _signals_held():
            _rename_all(staged, paths)
            staged = []
    except OSError as exc:
        raise CommandError(f"cannot write {current}: {exc.strerror or exc}", EXIT_WRITE) from None
    finally:
        for name in staged:
            if os.path.lexists(name):
                os.unlink(name)


def _rename_all(staged: list[str], targets: list[str]) -> None:
    """Rename every staged file onto its target; on a failure, remove the targets this call had
    created (under the caller's lock, so another writer's set is never touched)."""
    created: list[str] = []
    try:
        for tmp_name, target in zip(staged, targets):
            existed = os.path.lexists(target)
            try:
                os.replace(tmp_name, target)
            except OSError as exc:
                raise CommandError(f"cannot write {target}: {exc.strerror or exc}", EXIT_WRITE) from None
            if not existed:
                created.append(target)
    except BaseException:
        for name in created:
            if os.path.lexists(name):
                os.unlink(name)
        raise


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait during the renames (milliseconds), so Ctrl-C cannot leave half of a
    set renamed; they are delivered right after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _set_lock:
    """An exclusive ``flock`` on the folder of a set of several outputs (they share it), held for
    the renames only; one output needs no lock (a rename is atomic by itself). Locking the folder
    leaves no lock file behind."""

    def __init__(self, paths: list[str]):
        self.folder = None if len(paths) < 2 else Path(paths[0]).parent
        self.fd: int | None = None

    def __enter__(self):
        if self.folder is not None:
            self.fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX)
                    break
                except InterruptedError:
                    continue
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
        return False


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


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _output_mode(target: Path) -> int:
    """The permissions of the file being replaced, else what open() would give: 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def sample_paths(path: str, samples: int) -> list[str]:
    """``out.png`` for one sample; ``out-0.png`` ... ``out-{N-1}.png`` for N."""
    if samples == 1:
        return [path]
    if path == "-":
        raise CommandError("several samples cannot all go to standard output", EXIT_USAGE)
    p = Path(path)
    return [str(p.with_name(f"{p.stem}-{k}{p.suffix}")) for k in range(samples)]

