"""Bounded reads (issue 47): ``info`` and ``truncate`` apply the pixel budget and read SIC input
chunk by chunk; ``encode`` reads an image no further than what its declared size can hold. Each
case as the probe ran it: a whole process under a memory limit, and the API under tracemalloc."""

from __future__ import annotations

import io
import os
import resource
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import container, fileio
from tests.clitools import one_torch_thread, sicc_command  # noqa: F401
from tests.conftest import synthetic_image
from tests.fuzz import forge_header

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "kodim23.png"
MEMORY_LIMIT = 1 << 30
HUGE = 1 << 40  # a --max-pixels past 1048576^2: only the structure bounds the read then


def limited():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def env() -> dict:
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    e.pop("SICC_WEIGHTS", None)
    return e


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """``command`` in sh, ``sicc`` meaning this checkout's command, under a 1 GiB address-space limit."""
    sicc_cmd = " ".join(sicc_command())
    return subprocess.run(["sh", "-c", command.replace("sicc ", sicc_cmd + " ")], cwd=cwd, env=env(),
                          capture_output=True, timeout=120, preexec_fn=limited)


def one_error(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("sicc: error: ") and fragment in lines[0], lines


@pytest.fixture()
def huge_header(tmp_path, small_file) -> Path:
    path = tmp_path / "head.bin"
    path.write_bytes(forge_header(small_file, width=1 << 20, height=1 << 20)[: container.HEADER_SIZE])
    return path


@pytest.mark.parametrize("command", ["info -", "truncate - -o t.sic --level 1"])
def test_header_then_dev_zero_on_stdin(tmp_path, huge_header, command):
    """A header declaring 1048576x1048576, then /dev/zero: refused from the header by the budget,
    and with the budget raised past it, after the first chunk head; never read to memory (exit 1
    under the limit before). No output."""
    one_error(run_shell(f"cat head.bin /dev/zero | sicc {command}", tmp_path), 4, "over the limit of 67108864")
    one_error(run_shell(f"cat head.bin /dev/zero | sicc {command} --max-pixels {HUGE}", tmp_path), 4,
              "chunk is corrupt")
    assert not (tmp_path / "t.sic").exists()


@pytest.mark.parametrize("command", ["info sparse.sic", "truncate sparse.sic -o t.sic --level 1"])
def test_sparse_20_gb_file(tmp_path, huge_header, command):
    sparse = tmp_path / "sparse.sic"
    sparse.write_bytes(huge_header.read_bytes())
    os.truncate(sparse, 20 << 30)
    start = time.monotonic()
    one_error(run_shell(f"sicc {command}", tmp_path), 4, "over the limit of 67108864")
    one_error(run_shell(f"sicc {command} --max-pixels {HUGE}", tmp_path), 4, "chunk is corrupt")
    assert time.monotonic() - start < 30


def peak(fn, *args, **kwargs) -> tuple[int, BaseException | None]:
    tracemalloc.start()
    error = None
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - returned to the test
        error = exc
    finally:
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return top, error


class Endless(io.RawIOBase):
    """``head`` then zeros forever; counts what was handed out."""

    def __init__(self, head: bytes):
        self.head, self.position = head, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        n = len(buffer)
        chunk = (self.head[self.position : self.position + n]).ljust(n, b"\0")
        buffer[:n] = chunk
        self.position += n
        return n


def test_api_reads_are_bounded(tmp_path, huge_header, small_file):
    """sicc.info and sicc.truncate on the sparse file and on an endless stream: the right error,
    with under 2 MiB allocated (11.7 GB before)."""
    sparse = tmp_path / "sparse.sic"
    sparse.write_bytes(huge_header.read_bytes())
    os.truncate(sparse, 20 << 30)
    for call in (sicc.info, lambda s, **k: sicc.truncate(s, level=1, **k)):
        top, error = peak(call, str(sparse))
        assert isinstance(error, sicc.ImageTooLargeError) and top < 2 << 20, (error, top)
        top, error = peak(call, str(sparse), max_pixels=HUGE)
        assert isinstance(error, sicc.CorruptError) and "chunk is corrupt" in str(error) and top < 2 << 20
        stream = Endless(huge_header.read_bytes())
        top, error = peak(call, io.BufferedReader(stream), max_pixels=HUGE)
        assert isinstance(error, sicc.CorruptError) and top < 2 << 20 and stream.position < 1 << 20
    stream = Endless(small_file)  # a whole file then zeros: read to the chunk after its last level
    info = sicc.info(io.BufferedReader(stream, buffer_size=64))
    assert info.corrupt_level == 17 and len(info.levels) == 16


def test_budget_applies_to_info_and_truncate(small_file, tmp_path):
    """Over the budget (here lowered below the file's 128x128 padded size): refused from the
    header, as decode does; --max-pixels raises it."""
    path = tmp_path / "a.sic"
    path.write_bytes(small_file)
    with pytest.raises(sicc.ImageTooLargeError):
        sicc.info(path, max_pixels=1000)
    with pytest.raises(sicc.ImageTooLargeError):
        sicc.truncate(small_file, level=1, max_pixels=1000)
    assert sicc.truncate(path, level=1, max_pixels=128 * 128) == sicc.truncate(small_file, level=1)
    one_error(run_shell("sicc info a.sic --max-pixels 1000", tmp_path), 4, "over the limit of 1000")
    assert run_shell("sicc info a.sic --max-pixels 16384", tmp_path).returncode == 0


# -- encode ---------------------------------------------------------------------------------------
def test_png_followed_by_20_gb_of_zeros(tmp_path):
    """A valid 384x256 PNG with 20 GB of sparse zeros after it: refused from the file's size once the
    header gives the image's (exit 3, one line), nothing read to memory (exit 1 at 4 GB before)."""
    png = tmp_path / "tail.png"
    png.write_bytes(EXAMPLE.read_bytes())
    os.truncate(png, 20 << 30)
    start = time.monotonic()
    one_error(run_shell("sicc encode tail.png -o x.sic", tmp_path), 3, "larger than a 384x256 image file can be")
    assert time.monotonic() - start < 30 and not (tmp_path / "x.sic").exists()


def png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


def test_png_on_stdin_declaring_100000_squared_is_refused_from_its_header(tmp_path):
    """Its first 33 bytes settle it: refused (exit 3) after at most a few MiB of the stream (the
    probe read 1.14 GB before the refusal)."""
    proc = subprocess.Popen([*sicc_command(), "encode", "-", "-o", "x.sic"], cwd=tmp_path, env=env(),
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limited)
    written = [0]

    def feed():
        try:
            proc.stdin.write(png_header(100000, 100000))
            block = bytes(1 << 16)
            while written[0] < 2 << 30:
                proc.stdin.write(block)
                written[0] += len(block)
        except (BrokenPipeError, ValueError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    _, stderr = proc.communicate(timeout=120)
    writer.join(timeout=10)
    lines = stderr.decode().splitlines()
    assert proc.returncode == 3 and len(lines) == 1 and "100000x100000" in lines[0], lines
    assert written[0] < 16 << 20, written[0]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF", "PPM"])
def test_declared_size_of_each_format(fmt):
    image = Image.fromarray(synthetic_image(77, 123, seed=1))
    buf = io.BytesIO()
    image.save(buf, fmt)
    data = buf.getvalue()
    assert fileio._declared_size(data[:4096]) == (123, 77)
    assert fileio._declared_size(data[:6]) is None


def test_image_read_is_capped_by_its_declared_size(tiny_weights, tmp_path):
    """The read stops at 16 bytes a pixel plus 64 MiB of the declared size (not of the budget):
    a 64x64 PNG followed by 80 MiB on stdin is refused, the same PNG alone encodes as from a file."""
    buf = io.BytesIO()
    Image.fromarray(synthetic_image(64, 64)).save(buf, "PNG")
    png = buf.getvalue()
    cap = fileio.image_file_cap(64 * 64)
    with pytest.raises(sicc.InputTooLargeError, match=f"larger than a 64x64 image file can be \\(over {cap} bytes\\)"):
        fileio._read_image_bytes(io.BytesIO(png[64:] + bytes(80 << 20)), png[:64], None, sicc.MAX_IMAGE_PIXELS)
    (tmp_path / "a.png").write_bytes(png)
    from_file = subprocess.run([*sicc_command(), "encode", "a.png", "-o", "f.sic", "--weights", str(tiny_weights)],
                               cwd=tmp_path, env=env(), capture_output=True)
    from_pipe = subprocess.run([*sicc_command(), "encode", "-", "-o", "p.sic", "--weights", str(tiny_weights)],
                               cwd=tmp_path, env=env(), capture_output=True, input=png)
    assert from_file.returncode == from_pipe.returncode == 0, (from_file.stderr, from_pipe.stderr)
    assert (tmp_path / "f.sic").read_bytes() == (tmp_path / "p.sic").read_bytes()
