"""Hardening (issue 13): decompression bombs, a pixel budget that counts the padded size, bounded
input reads, and the spec's chunk order; each through the API and the CLI."""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import threading
import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from PIL import Image

import sicc
from sicc import container
from tests.clitools import INTERRUPTIBLE, assert_error, cli_inprocess, one_torch_thread, sicc_command  # noqa: F401
from tests.fuzz import REGRESSIONS, file_with_symbols, forge_header
from tests.spec_parser import layout_problem, read_chunks

REPO = Path(__file__).resolve().parents[1]
BOMBS = {8192: REGRESSIONS / "bomb-8192x8192-empty-hyperprior.sic",
         16384: REGRESSIONS / "bomb-16384x16384-empty-hyperprior.sic"}


@pytest.fixture(scope="module")
def coded(tiny_codec):
    """A 48x80 file whose levels hold real symbols (the untrained tiny model alone codes zeros)."""
    data = file_with_symbols(tiny_codec, 48, 80, seed=5)
    return data, container.parse(data)


def child_env() -> dict:
    """A ``sicc`` process that runs this checkout (from any folder) with the shipped model."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("SICC_WEIGHTS", None)
    return env


def rebuild(parsed, hyper=None, levels=None, icc=None, exif=None) -> bytes:
    """The file again with chunks replaced, every CRC valid: what reaches the payload checks."""
    return container.write(parsed.header, parsed.hyper if hyper is None else hyper,
                           parsed.levels if levels is None else levels, icc_profile=icc, exif=exif)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return container._chunk(kind, payload)


# -- 1. decompression bombs: coded data that cannot hold what it decodes to ---------------------
@pytest.mark.parametrize("side", sorted(BOMBS))
def test_44_byte_bombs_are_refused_at_once(side, tmp_path):
    """The probe's files (a 32-byte header declaring 8192x8192 or 16384x16384 and an empty HYPR)
    ran for minutes and took gigabytes; now: exit 4 with the reason, in well under a second, in
    decode (the shipped model's id), info and the API, also with the budget raised past the size."""
    path = BOMBS[side]
    assert path.stat().st_size == 44
    out = tmp_path / "out.png"
    for extra in ([], ["--max-pixels", str(1 << 28)]):
        start = time.monotonic()
        result = cli_inprocess(["decode", path, "-o", out, *extra])
        elapsed = time.monotonic() - start
        reason = "over the limit of 67108864" if side == 16384 and not extra else "HYPR chunk is corrupt"
        assert_error(result, 4, reason)
        assert elapsed < 1.0, elapsed
        assert not out.exists()
    # info applies the pixel budget too (issue 47): raised past the size, it reads the structure
    assert_error(cli_inprocess(["info", path, "--max-pixels", str(1 << 28)]), 4, "HYPR chunk is corrupt",
                 "no coded data")
    start = time.monotonic()
    with pytest.raises(sicc.CorruptError, match="HYPR chunk is corrupt"):
        sicc.decode(path.read_bytes(), max_pixels=1 << 28)
    with pytest.raises(sicc.CorruptError, match="HYPR chunk is corrupt"):
        sicc.info(path, max_pixels=1 << 28)
    assert time.monotonic() - start < 1.0


def test_bomb_refused_by_a_fresh_process():
    """The real command, as the probe ran it: exit 4 and one line (no model load, no torch)."""
    start = time.monotonic()
    proc = subprocess.run([*sicc_command(), "decode", str(BOMBS[8192]), "-o", "-"], capture_output=True,
                          timeout=120, env=child_env())
    assert proc.returncode == 4 and proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sicc: error: ") and "HYPR chunk is corrupt" in lines[0]
    print(f"fresh process refused the 8K bomb in {time.monotonic() - start:.2f} s")


@pytest.mark.parametrize("case,fragment", [
    ("hyper-cut", "hyperprior is corrupt: range decoder ran past the end of its data"),
    ("hyper-extra", "hyperprior is corrupt: range decoder left data unused"),
    ("level-extra", "level 3 is corrupt: range decoder left data unused"),
    ("level-cut", "level 3 is corrupt"),
])
def test_range_coded_payload_must_decode_exactly(case, fragment, coded, tiny_codec, tmp_path, tiny_weights):
    """A payload one word short (the decoder reads past its end) or one word long (words left over),
    with valid CRCs: corrupt, named as such. A bad level is an error with --strict, else a warning
    and the levels before it."""
    data, parsed = coded
    words = {"hyper-cut": {"hyper": parsed.hyper[:-4]},
             "hyper-extra": {"hyper": parsed.hyper + b"\0\0\0\0"},
             "level-extra": {"levels": parsed.levels[:2] + [parsed.levels[2] + b"\0\0\0\0"] + parsed.levels[3:]},
             "level-cut": {"levels": parsed.levels[:2] + [parsed.levels[2][:-4]] + parsed.levels[3:]}}[case]
    forged = rebuild(parsed, **words)
    assert sicc.info(forged).complete  # framing, CRCs and word counts are fine: only the model can tell
    with pytest.raises(sicc.CorruptError, match=fragment):
        tiny_codec.decode(forged, strict=True)
    path, out = tmp_path / "in.sic", tmp_path / "out.png"
    path.write_bytes(forged)
    args = ["decode", path, "-o", out, "--weights", tiny_weights, "--spread", "0"]
    assert_error(cli_inprocess([*args, "--strict"]), 4, fragment)
    if case.startswith("level"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            image = tiny_codec.decode(forged, spread=0.0)[0]
        messages = [str(w.message) for w in caught if issubclass(w.category, sicc.CorruptLevelWarning)]
        assert len(messages) == 1 and messages[0].startswith("level 3 is corrupt (range")
        assert image.tobytes() == tiny_codec.decode(sicc.truncate(data, level=2), spread=0.0)[0].tobytes()
        result = cli_inprocess(args)
        assert result.code == 0 and "level 3 is corrupt (range" in result.stderr
        warning, summary = result.stderr.splitlines()  # the warning, then decode's one-line summary
        assert warning.startswith("sicc: warning: ") and summary.startswith(f"{out}: ")


def test_info_checks_the_coded_word_framing(coded):
    """What info can tell without the model: a coded chunk holds at least one whole 32-bit word."""
    data, parsed = coded
    for hyper in (b"", b"\1\2\3\4\5\6"):
        forged = rebuild(parsed, hyper=hyper)
        with pytest.raises(sicc.CorruptError, match="HYPR chunk is corrupt"):
            sicc.info(forged)
    for payload in (b"", b"\1\2\3\4\5"):
        forged = rebuild(parsed, levels=parsed.levels[:2] + [payload] + parsed.levels[3:])
        info = sicc.info(forged)
        assert info.corrupt_level == 3 and len(info.levels) == 2 and not info.complete
        with pytest.raises(sicc.CorruptError, match="level 3 is corrupt"):
            container.parse(forged, strict=True)


# -- 2. the pixel budget counts the padded size ---------------------------------------------------
def test_default_budget_is_tens_of_megapixels():
    assert sicc.MAX_IMAGE_PIXELS == 8192 * 8192
    assert sicc.MAX_IMAGE_PIXELS < Image.MAX_IMAGE_PIXELS  # Pillow warns at 89 MP; a sicc pixel costs more
    header = container.Header(8192, 8192, b"\0" * 8, 16).pack()
    assert container.parse_header(header, sicc.MAX_IMAGE_PIXELS).width == 8192
    assert container.parse_header(container.Header(1, 1 << 20, b"\0" * 8, 16).pack(), 1 << 26).height == 1 << 20
    for width, height in ((8193, 8192), (65, 1 << 20)):
        with pytest.raises(sicc.ImageTooLargeError):
            container.parse_header(container.Header(width, height, b"\0" * 8, 16).pack(), sicc.MAX_IMAGE_PIXELS)


def test_decode_budget_counts_the_padded_size(coded, tiny_codec, tmp_path, tiny_weights):
    """A 1 x 65536 header is 64 x 65536 of work: refused by a 65536-pixel budget, from the header,
    in the API and the CLI, with the padded size and the budget in the message."""
    data, _ = coded
    tall = forge_header(data, width=1, height=1 << 16)
    message = r"1x65536 \(padded to 64x65536\) = 4194304 pixels, over the limit of 65536"
    with pytest.raises(sicc.ImageTooLargeError, match=message):
        tiny_codec.decode(tall, max_pixels=1 << 16)
    path = tmp_path / "tall.sic"
    path.write_bytes(tall)
    result = cli_inprocess(["decode", path, "-o", tmp_path / "x.png", "--max-pixels", 1 << 16,
                            "--weights", tiny_weights])
    assert_error(result, 4, "padded to 64x65536", "over the limit of 65536", "--max-pixels")
    # 80x48 pads to 128x64: the budget is what the codec works on
    with pytest.raises(sicc.ImageTooLargeError, match="padded to 128x64"):
        tiny_codec.decode(data, max_pixels=128 * 64 - 1)
    assert tiny_codec.decode(data, max_pixels=128 * 64, spread=0.0)[0].size == (80, 48)


class CountingStream(io.RawIOBase):
    """An endless, seekable stream: ``head`` then ``fill`` bytes forever. ``given`` is the furthest
    byte handed out, ``largest`` the largest read asked for; an unbounded read() is an error."""

    def __init__(self, head: bytes, fill: bytes = b"\0"):
        self.head, self.fill, self.position, self.given, self.largest = head, fill, 0, 0, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        if whence != io.SEEK_SET:
            raise io.UnsupportedOperation("endless stream")  # it has no end to seek from
        self.position = offset
        return offset

    def tell(self):
        return self.position

    def read(self, size=-1):
        if size is None or size < 0:
            raise AssertionError("unbounded read")
        self.largest = max(self.largest, size)
        start = self.position
        head = self.head[start : start + size]
        out = head + self.fill * (size - len(head))
        self.position += size
        self.given = max(self.given, self.position)
        return out


def test_budget_is_checked_from_the_first_32_bytes(coded):
    """Over the budget: refused before a byte past the header is read."""
    data, _ = coded
    stream = CountingStream(forge_header(data, width=4096, height=4096))
    with pytest.raises(sicc.ImageTooLargeError):
        container.read(stream, max_pixels=1 << 20)
    assert stream.given == container.HEADER_SIZE


# -- 3. bounded input reads -------------------------------------------------------------------------
def test_stream_is_read_with_a_cap_from_its_header(coded):
    """A valid header followed by an endless stream: read chunk by chunk, in pieces, up to the size
    bound of that header, then refused as corrupt; a valid file followed by endless zeros: read up
    to the first chunk after its last level (issue 47); endless zeros after the signature: at once."""
    data, parsed = coded
    stream = CountingStream(data[:container.HEADER_SIZE] + b"HYPR\xf0\xff\xff\xff")
    cap = container.max_file_bytes(80, 48, parsed.header.model_levels)
    with pytest.raises(sicc.CorruptError, match=f"larger than a 80x48 SIC file can be \\(at most {cap} bytes\\)"):
        sicc.info(stream)
    assert stream.given == cap + 1 and stream.largest <= container.READ_PIECE
    stream = CountingStream(data)
    assert sicc.info(stream).corrupt_level == parsed.header.model_levels + 1  # a 17th chunk: not a level
    assert stream.given == len(data) + 12
    zeros = CountingStream(b"")
    with pytest.raises(sicc.NotSicError):
        sicc.decode(zeros)
    assert zeros.given <= container.NOT_SIC_HEAD
    assert container.read(io.BytesIO(data)) == data == container.read(bytearray(data))


def test_size_bound_holds_for_what_sicc_writes(coded, tiny_codec):
    data, parsed = coded
    assert len(data) <= container.max_file_bytes(80, 48, 16)
    with pytest.raises(sicc.CorruptError, match="larger than"):
        sicc.info(data + b"\0" * (container.max_file_bytes(80, 48, 16) - len(data) + 1))
    # metadata past the format's limit is left out, with a warning; sicc never writes what it refuses
    with pytest.warns(sicc.SiccWarning, match="ICC profile of 16777217 bytes"):
        written = rebuild(parsed, icc=b"\0" * (container.MAX_METADATA_BYTES + 1), exif=b"Exif")
    assert [c.kind for c in read_chunks(written)][:2] == ["EXIF", "HYPR"]


def test_oversized_file_on_disk_is_refused_without_reading_it(coded, tmp_path):
    """A (sparse) file longer than its header allows: refused from its size, nothing read."""
    data, _ = coded
    path = tmp_path / "long.sic"
    path.write_bytes(data)
    os.truncate(path, 1 << 36)  # 64 GiB, sparse
    tracemalloc.start()
    try:
        with pytest.raises(sicc.CorruptError, match="larger than"):
            sicc.info(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert_error(cli_inprocess(["info", path]), 4, "larger than a 80x48 SIC file can be")


def _limited_memory():
    """Before the fix these read /dev/zero to the end: cap the child so that fails fast, not the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.parametrize("args,stdin", [(["info", "/dev/zero"], None), (["decode", "-", "-o", "out.png"], "/dev/zero"),
                                        (["truncate", "/dev/zero", "-o", "t.sic", "--level", "1"], None)],
                         ids=["info", "decode-stdin", "truncate"])
def test_dev_zero_ends_at_once(args, stdin, tmp_path):
    with open(stdin or os.devnull, "rb") as source:
        start = time.monotonic()
        proc = subprocess.run([*sicc_command(), *args], stdin=source, capture_output=True, timeout=120,
                              cwd=tmp_path, env=child_env(), preexec_fn=_limited_memory)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sicc: error: ") and "not a SIC file (bad signature)" in lines[0]
    assert time.monotonic() - start < 60
    assert list(tmp_path.iterdir()) == []


def test_api_refuses_dev_zero_at_once():
    with pytest.raises(sicc.NotSicError):
        sicc.info("/dev/zero")
    with open("/dev/zero", "rb") as zeros:
        with pytest.raises(sicc.NotSicError):
            sicc.decode(zeros)
        with pytest.raises(sicc.NotSicError):
            sicc.truncate(zeros, level=0)


def test_ctrl_c_while_reading_stdin(coded):
    """A header declaring 1048576x1048576 with the budget raised past it (its cap is terabytes) and a
    hyperprior chunk of 4 GiB, then a slow, endless stream: SIGINT ends the read with exit 130 and
    one line."""
    data, _ = coded
    head = forge_header(data, width=1 << 20, height=1 << 20)[:container.HEADER_SIZE] + b"HYPR\xf0\xff\xff\xff"
    proc = subprocess.Popen([*sicc_command(), "info", "-", "--max-pixels", str(1 << 40)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), **INTERRUPTIBLE)
    stop = threading.Event()

    def feed():
        try:
            proc.stdin.write(head)
            while not stop.is_set():
                proc.stdin.write(b"\0" * 4096)
                proc.stdin.flush()
                time.sleep(0.01)
        except (BrokenPipeError, ValueError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        time.sleep(3.0)  # the interpreter is up and reading
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    writer.join(timeout=5)
    assert code == 130
    assert proc.stderr.read().decode().splitlines() == ["sicc: error: interrupted"]


def test_pillow_plugin_reads_bounded(coded, tiny_codec, monkeypatch):
    data, _ = coded
    monkeypatch.setattr(sicc.Codec, "default", classmethod(lambda cls: tiny_codec))
    stream = CountingStream(data)  # a valid file followed by endless zeros: read to the first stray chunk
    with Image.open(stream) as image:
        assert image.size == (80, 48)
    assert stream.given <= len(data) + 12
    monkeypatch.setattr(sicc, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError, match="over the limit of 1000"):
        Image.open(io.BytesIO(data))


# -- 6. the spec's chunk order ----------------------------------------------------------------------
def test_iccp_after_exif_is_refused_as_the_spec_says(coded, tmp_path):
    data, parsed = coded
    good = rebuild(parsed, icc=b"icc", exif=b"exif")
    assert layout_problem(read_chunks(good)) is None and sicc.info(good).has_icc_profile
    hypr = good.index(b"HYPR")
    iccp = good[container.HEADER_SIZE: container.HEADER_SIZE + 12 + 3]
    exif = good[container.HEADER_SIZE + 15: hypr]
    for forged in (good[:container.HEADER_SIZE] + exif + iccp + good[hypr:],
                   good[:container.HEADER_SIZE] + iccp + exif + iccp + good[hypr:],
                   good[:container.HEADER_SIZE] + exif + exif + good[hypr:]):
        assert layout_problem(read_chunks(forged)) is not None  # the spec's reader and sicc agree
        with pytest.raises(sicc.CorruptError, match="chunk out of order"):
            sicc.info(forged)
    path = tmp_path / "order.sic"
    path.write_bytes(good[:container.HEADER_SIZE] + exif + iccp + good[hypr:])
    assert_error(cli_inprocess(["info", path]), 4, "ICCP chunk out of order")


# -- 3. (encode) images from pipes and devices ------------------------------------------------------
@pytest.mark.parametrize("args,stdin", [(["encode", "-", "-o", "x.sic"], "/dev/zero"),
                                        (["encode", "/dev/zero", "-o", "x.sic"], None)], ids=["stdin", "device"])
def test_encode_from_dev_zero_ends_at_once(args, stdin, tmp_path):
    """An image read from a pipe or a device must start with an image signature: /dev/zero is not
    an image (exit 3) after 16 bytes, where it used to be read until memory ran out (exit 1)."""
    with open(stdin or os.devnull, "rb") as source:
        proc = subprocess.run([*sicc_command(), *args], stdin=source, capture_output=True, timeout=120,
                              cwd=tmp_path, env=child_env(), preexec_fn=_limited_memory)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sicc: error: ") and "not a readable image" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_encode_stream_is_capped_by_the_pixel_budget(tmp_path):
    """A PNG signature followed by endless bytes on stdin: read up to what the budget allows
    (16 bytes a pixel plus 64 MiB), then refused (exit 3) with the budget in the message."""
    png = (REPO / "examples" / "kodim23.png").read_bytes()
    proc = subprocess.Popen([*sicc_command(), "encode", "-", "-o", "x.sic", "--max-pixels", "1000"], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(),
                            preexec_fn=_limited_memory)

    def feed():
        try:
            proc.stdin.write(png[:16])
            while True:
                proc.stdin.write(b"\0" * (1 << 16))
        except (BrokenPipeError, ValueError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = proc.stderr.read().decode().splitlines()
    assert code == 3 and len(lines) == 1 and "pixel budget of 1000" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
