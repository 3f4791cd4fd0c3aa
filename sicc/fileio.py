"""Files for the command-line tools: reading inputs, encoding output images, atomic writes.

Shared by every ``sicc`` command and by batch mode (``sicc/batch.py``), as libjxl's
``tools/file_io`` is shared by cjxl and djxl; ``cli.py`` only parses flags and calls these.
Every failure is a :class:`CommandError` that carries its exit code.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from .errors import SiccWarning

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_READ, EXIT_DATA, EXIT_WRITE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_TERMINATED = 143
"""SIGTERM: 128 + 15, as a shell reports a process killed by it; sicc cleans up first, as for Ctrl-C."""

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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the command's handler: it unwinds like Ctrl-C (every
    temporary file is removed on the way out), and the command exits 143 instead of 130."""


def raise_terminated(signum, frame) -> None:
    """The command's SIGTERM handler (installed by ``cli.run``)."""
    raise Terminated()


class QuietExit(Exception):
    """Standard output was closed by its reader (``sicc info x.sic | head -1``): stop quietly, as
    Unix tools do, with exit 0."""


# -- reading -------------------------------------------------------------------------------
IMAGE_BYTES_PER_PIXEL = 16
"""Most bytes an image file spends per pixel (uncompressed 32-bit float RGBA): with
``IMAGE_METADATA_BYTES``, the most an image file of a given size may hold, and from the pixel
budget, the most an image file may hold before its size is known."""
IMAGE_METADATA_BYTES = 64 << 20


def image_file_cap(pixels: int) -> int:
    """The most bytes an image file of ``pixels`` pixels may hold (its first frame, metadata)."""
    return pixels * IMAGE_BYTES_PER_PIXEL + IMAGE_METADATA_BYTES


def read_input(path: str, max_pixels: int | None = None) -> bytes:
    """The bytes of an image to encode from ``path`` ('-': standard input), read in bounded pieces
    (Ctrl-C works between them).

    The image's size is taken from its header as soon as the bytes read so far hold it (Pillow opens
    lazily: a PNG's first 33 bytes give it): an image over the pixel budget ``max_pixels`` is refused
    then, and the read is capped at what an image of that size can hold (:func:`image_file_cap`).
    Until the size is known the cap comes from the budget. A regular file is checked against the cap
    by its size, before it is read. A pipe or a device (stdin, /dev/zero) must also start with the
    signature of an image format Pillow knows, checked from its first 16 bytes. A SIC file is
    returned from its first bytes alone (``encode`` refuses it with a hint)."""
    from .container import MAGIC, read_up_to
    from .errors import InputImageError

    try:
        with (open(path, "rb") if path != "-" else _borrowed(standard_input())) as handle:
            try:
                status = os.fstat(handle.fileno())
                size = status.st_size if stat.S_ISREG(status.st_mode) else None
            except (OSError, ValueError, AttributeError):  # no file descriptor (a test's stream): a stream
                size = None
            head = read_up_to(handle, 64)  # the signature (16 bytes) and the size of the common formats
            if head.startswith(MAGIC):  # a SIC file: `encode` refuses it from these bytes, with a hint
                return head
            if size is None and not _known_image_signature(head[:16]):
                raise InputImageError("not a readable image (unknown or damaged format)")
            return _read_image_bytes(handle, head, size, max_pixels)
    except IsADirectoryError:
        raise CommandError(f"cannot read {path}: it is a folder (give files, or a folder with -o DIR)",
                           EXIT_READ) from None
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}", EXIT_READ) from None


def _read_image_bytes(handle, head: bytes, size: int | None, max_pixels: int | None) -> bytes:
    """The rest of :func:`read_input`: pieces appended to ``head`` under a cap that tightens once
    the image's header has been read (probed after 64 KiB, then at every fourfold size)."""
    from .container import READ_PIECE
    from .errors import InputTooLargeError

    cap = None if max_pixels is None else image_file_cap(max_pixels)
    why = f"an image within the pixel budget of {max_pixels} can be (raise it with --max-pixels)"
    data = bytearray(head)
    known, next_probe, ended = False, len(head), False
    while True:
        if not known and (ended or len(data) >= next_probe):
            dims = _declared_size(bytes(data))
            next_probe = max(1 << 16, 4 * len(data))
            if dims is not None:
                from .image_io import check_size

                known = True
                check_size(*dims, max_pixels)  # InputTooLargeError: refused from the header
                own = image_file_cap(dims[0] * dims[1])
                if cap is None or own < cap:
                    cap, why = own, f"a {dims[0]}x{dims[1]} image file can be"
        if cap is not None and (len(data) > cap or (size is not None and size > cap)):
            raise InputTooLargeError(f"the file is larger than {why} (over {cap} bytes)")
        if ended:
            return bytes(data)
        want = READ_PIECE if cap is None else min(READ_PIECE, cap + 1 - len(data))
        piece = handle.read(want)
        ended = not piece
        data += piece


def _declared_size(prefix: bytes) -> tuple[int, int] | None:
    """(width, height) of the image whose first bytes are ``prefix``, from its header, or None when
    the prefix does not hold it yet (or ever). PNG, GIF, BMP, JPEG and WebP are read here from the
    field that declares the size (a PNG's first 24 bytes), since Pillow's lazy open also reads the
    chunks or segments after it and fails on damaged ones; other formats through Pillow's open."""
    from PIL import Image

    from .image_io import pillow_bomb_check_lifted

    try:
        known = _header_dimensions(prefix)
    except struct.error:
        known = None
    if known is None:
        try:
            with pillow_bomb_check_lifted(), Image.open(io.BytesIO(prefix)) as image:
                known = image.size
        except Exception:  # noqa: BLE001 - any failure means "not known from these bytes"
            return None
    return known if min(known) > 0 else None  # no image has an empty side: the header is not read yet


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _header_dimensions(data: bytes) -> tuple[int, int] | None:
    """The declared size of a PNG, GIF, BMP, JPEG or WebP from its first bytes (None: another
    format, or not enough bytes yet)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:4] == b"GIF8" and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:2] == b"BM" and len(data) >= 26:
        if struct.unpack_from("<I", data, 14)[0] == 12:
            return struct.unpack_from("<HH", data, 18)
        width, height = struct.unpack_from("<ii", data, 18)
        return abs(width), abs(height)
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
            elif marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                pos += 2
            elif marker in _JPEG_SOF:
                if pos + 9 > len(data):
                    return None
                height, width = struct.unpack_from(">HH", data, pos + 5)
                return width, height
            else:
                pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return (1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little"))
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            width, height = struct.unpack_from("<HH", data, 26)
            return width & 0x3FFF, height & 0x3FFF
    return None


def standard_input():
    """The binary standard input; a closed one (``sicc encode - <&-``) cannot be read (exit 3)."""
    if sys.stdin is None or getattr(sys.stdin, "buffer", None) is None:
        raise CommandError("cannot read standard input: it is closed", EXIT_READ)
    return sys.stdin.buffer


def standard_output():
    """The binary standard output; a closed one (``sicc info x.sic >&-``) cannot be written (exit 5)."""
    if sys.stdout is None or getattr(sys.stdout, "buffer", None) is None:
        raise CommandError("cannot write to standard output: it is closed", EXIT_WRITE)
    return sys.stdout.buffer


@contextmanager
def _borrowed(handle):
    """``handle`` as a context manager that does not close it (standard input)."""
    yield handle


def _known_image_signature(prefix: bytes) -> bool:
    """Whether a Pillow format that has a signature recognises ``prefix`` (Pillow's own test, on
    the first 16 bytes as Image.open reads them)."""
    from PIL import Image

    Image.init()
    for _, accept in Image.OPEN.values():
        if accept is None:
            continue
        try:
            if accept(prefix):
                return True
        except Exception:  # noqa: BLE001 - some plugins' tests index past a prefix shorter than they expect
            continue
    return False


def read_sic_input(path: str, max_pixels: int | None = None, data: bytes | None = None) -> bytes:
    """A SIC file from ``path`` ('-': standard input), read in bounded pieces by
    ``container.read``: the signature and header (with the pixel budget ``max_pixels``, when
    given) are checked from the first 32 bytes, the rest is read up to what the header allows.
    An image given instead gets a hint at `sicc encode`. ``data``: the file's bytes, already read
    (by Ray, in ``sicc.cluster``), get the same checks and messages."""
    from .container import read
    from .errors import NotSicError

    try:
        return read(data if data is not None else standard_input() if path == "-" else path, max_pixels)
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
    """The image format of an output path (PNG for '-' and for a device or FIFO named without a
    format suffix); ``quality`` only for JPEG."""
    if path == "-" or (Path(path).suffix.lower() not in OUTPUT_FORMATS and written_in_place(path)):
        fmt = "PNG"  # standard output, or a device or FIFO without a format suffix (/dev/null)
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
    try:
        return exif.tobytes()
    except Exception as exc:  # noqa: BLE001 - a tag of the wrong type (an ASCII Orientation) or an offset near 2^32
        warnings.warn(f"{name}: EXIF dropped: it is damaged ({' '.join(str(exc).split()) or type(exc).__name__})",
                      SiccWarning, stacklevel=3)
        return None


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
    if path == "-" and standard_output() and sys.stdout.isatty():
        raise CommandError("refusing to write binary data to a terminal; redirect it (> out) or pipe it",
                           EXIT_USAGE)


def written_in_place(path: str) -> bool:
    """Whether the output ``path`` is written to directly rather than through a temporary file and a
    rename: an existing character device (``/dev/null``) or FIFO, followed through symlinks, or a
    symlink into /proc (``/dev/stdout``). Renaming over those would replace the device, the FIFO or
    the link itself with a regular file. A block device or a socket is refused (exit 5)."""
    if path == "-":
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    if stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        what = "a block device" if stat.S_ISBLK(mode) else "a socket"
        raise CommandError(f"cannot write {path}: it is {what}, not a file", EXIT_WRITE)
    link, hops = path, 0
    while os.path.islink(link) and hops < 40:
        target = os.readlink(link)
        link = target if os.path.isabs(target) else os.path.join(os.path.dirname(link), target)
        if os.path.abspath(link).startswith("/proc/"):
            return True
        hops += 1
    return False


def check_output_folders(paths: list[str]) -> None:
    """An output whose folder is missing or not writable is refused before any work (exit 5)."""
    for path in paths:
        if path == "-" or written_in_place(path):
            continue
        folder = Path(path).parent
        if not folder.is_dir():
            raise CommandError(f"cannot write {display_name(path, output=True)}: No such file or directory",
                               EXIT_WRITE)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CommandError(f"cannot write {display_name(path, output=True)}: Permission denied", EXIT_WRITE)


def write_stdout(data: bytes) -> None:
    """``data`` on standard output; a reader that went away ends the command quietly."""
    out = standard_output()
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        raise QuietExit() from None
    except OSError as exc:
        raise CommandError(f"cannot write to standard output: {exc.strerror or exc}", EXIT_WRITE) from None


def write_output(path: str, data: bytes, source: str | None = None) -> None:
    """Write atomically: a temporary file in the target folder, then rename.

    A failure or Ctrl-C leaves either the old file or nothing, never a partial one.
    """
    write_outputs([path], [data], source)


def write_outputs(paths: list[str], contents: Iterable[bytes], source: str | None = None) -> None:
    """Write several outputs as a unit: every one is first staged as a complete temporary file
    beside its target, then all are renamed while holding an exclusive lock on their folder. A
    failure or Ctrl-C removes the temporary files and the outputs this
    call had created, so N samples are written whole or not at all; the lock makes two processes
    writing the same names leave one whole set, never a mix of both. ``contents`` may be a
    generator: each file is staged as soon as it is produced (one decoded sample in memory). An
    output that is a device or a FIFO (:func:`written_in_place`) is written to directly, after the
    files, never replaced."""
    for path in paths:
        if source and _same_file(source, path):
            raise CommandError(f"refusing to overwrite the input file {path}", EXIT_USAGE)
    if paths == ["-"]:
        write_stdout(next(iter(contents)))
        return
    in_place = [written_in_place(path) for path in paths]
    staged: list[str] = []
    files: list[str] = []  # the targets of ``staged``
    direct: list[tuple[str, bytes]] = []  # devices and FIFOs: written after the files are in place
    current = paths[0]
    try:
        for current, data, here in zip(paths, contents, in_place):  # ``contents`` is iterated once
            if here:
                direct.append((current, data))
            else:
                staged.append(_stage(Path(current), data))
                files.append(current)
            del data
        if files:
            with _set_lock(files), _signals_held():
                _rename_all(staged, files)
                staged = []
        for current, data in direct:
            _write_in_place(current, data)
    except OSError as exc:
        raise CommandError(f"cannot write {current}: {exc.strerror or exc}", EXIT_WRITE) from None
    finally:
        for name in staged:
            if os.path.lexists(name):
                os.unlink(name)


def _write_in_place(path: str, data: bytes) -> None:
    """``data`` written straight into a device or FIFO (opening a FIFO waits for its reader)."""
    with open(path, "wb") as handle:
        handle.write(data)


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


TEMP_MARK = ".sicc-"
"""Temporary outputs are named ``.NAME.sicc-PID-XXXXXXXX.tmp`` beside ``NAME``: hidden, with the
writer's process id, so that one left by a killed process (SIGKILL, a power cut) can be told from
one being written."""
_TEMP_NAME = re.compile(r"^\..*\.sicc-(\d+)-[A-Za-z0-9_]+\.tmp$")
STALE_TEMP_SECONDS = 60
"""A temporary file is stale when its process is gone and it is older than this (a file is staged
in well under a second; the age guards a writer on another machine sharing the folder)."""
_swept_folders: set[str] = set()
_sweep_lock = threading.Lock()


def stale_temporaries(folder: str | Path, now: float | None = None) -> list[Path]:
    """The temporary files in ``folder`` that a sicc process left when it was killed: sicc's name
    pattern, a process id that no longer runs on this machine, older than STALE_TEMP_SECONDS.
    (``find DIR -name '.*.sicc-*.tmp'`` lists every sicc temporary file, stale or not.)"""
    import time

    now = time.time() if now is None else now
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or int(match.group(1)) == os.getpid() or _process_alive(int(match.group(1))):
            continue
        try:
            status = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode) and now - status.st_mtime >= STALE_TEMP_SECONDS:
            found.append(Path(entry.path))
    return found


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # someone else's live process (or a pid that cannot be one: then not ours)
    try:  # a zombie (ended, not yet collected by its parent) writes nothing more
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(folder: str | Path) -> None:
    """Remove :func:`stale_temporaries` of ``folder``, once per folder and process (before the
    first output is staged there); a file that cannot be removed is left as it is."""
    key = os.path.abspath(folder)
    with _sweep_lock:
        if key in _swept_folders:
            return
        _swept_folders.add(key)
    for path in stale_temporaries(folder):
        try:
            path.unlink()
        except OSError:
            pass


def remove_temporaries_of(targets: Iterable[str], writers: set[int]) -> None:
    """Remove the temporary files beside ``targets`` (``.NAME.sicc-PID-*.tmp``) written by the
    processes ``writers`` that no longer run: a caller that started those writers and saw them end
    (a cluster job's local Ray) knows they are its own, so no age guard is needed. A file that cannot
    be removed is left as it is."""
    by_folder: dict[str, set[str]] = {}
    for target in targets:
        folder, name = os.path.split(os.path.abspath(target))
        by_folder.setdefault(folder, set()).add(name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if not match or int(match.group(1)) not in writers or _process_alive(int(match.group(1))):
                continue
            if entry.name[1:entry.name.rindex(TEMP_MARK)] not in names:
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _stage(target: Path, data: bytes) -> str:
    """A complete, synced temporary copy of ``data`` beside ``target`` (named by TEMP_MARK), with
    the permissions the output should get (mkstemp's are 0600)."""
    remove_stale_temporaries(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}{TEMP_MARK}{os.getpid()}-", suffix=".tmp",
                                    dir=target.parent)
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


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes in hex, read in 1 MiB pieces (weights files, checkpoints)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
