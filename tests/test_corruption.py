"""Damaged and forged files (issue #6).

A flipped bit anywhere is caught: in the magic ("not a SIC file"), the version
(unsupported, checked first as the spec says), the rest of the header (its
CRC), a chunk before the levels (an error naming the chunk), or level k (its
CRC names it: "level k is corrupt"; the levels before it decode with a
CorruptLevelWarning, or ``strict`` raises). Forged headers with a valid CRC are
refused before anything is allocated: absurd sizes, a size over the pixel
limit (``max_pixels=``, ``sicc.MAX_IMAGE_PIXELS``, ``--max-pixels``), level
counts the model does not have. A chunk length past the end of the file is a
cut, not an allocation.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest

import sicc
from sicc import container
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess
from tests.conftest import decode_collecting_warnings, image_with_metadata
from tests.fuzz import forge_header, walk_chunks


@pytest.fixture(scope="module")
def sample(tiny_codec):
    """A 64x64 file with ICCP and EXIF chunks, its chunk map and the decode of each level count."""
    data = tiny_codec.encode(image_with_metadata(64, 64, seed=21, note="corruption test", icc=b"icc" * 9))
    chunks = walk_chunks(data)
    assert [c.kind for c in chunks[:3]] == [b"ICCP", b"EXIF", b"HYPR"] and len(chunks) == 19

    class Sample:
        pass

    sample = Sample()
    sample.data, sample.chunks = data, chunks
    sample.levels = {k + 1: c for k, c in enumerate(chunks[3:])}  # level -> chunk
    sample.reference = [np.asarray(tiny_codec.decode(data, spread=0.0, level=k)[0]) for k in range(17)]
    return sample


def flip(data: bytes, position: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


# -- bit flips ------------------------------------------------------------------------------
def test_a_flipped_level_is_named_and_the_levels_before_it_decode(tiny_codec, sample):
    """For every level k: a flip in its type, payload or CRC warns "level k is corrupt" and gives
    exactly the (k-1)-level decode; strict=True raises CorruptError naming level k."""
    for k, chunk in sample.levels.items():
        for position in (chunk.start + 1, chunk.start + 8, (chunk.start + chunk.end) // 2, chunk.end - 1):
            damaged = flip(sample.data, position, bit=k % 8)
            pixels, warned = decode_collecting_warnings(tiny_codec, damaged)
            expected = [sicc.CorruptLevelWarning] + ([sicc.NoLevelWarning] if k == 1 else [])
            assert [type(w.message) for w in warned] == expected, (k, position)
            assert f"level {k} is corrupt" in str(warned[0].message)
            assert f"decoding the {k - 1} levels before it" in str(warned[0].message)
            assert np.array_equal(pixels, sample.reference[k - 1]), (k, position)
            with pytest.raises(sicc.CorruptError, match=f"level {k} is corrupt"):
                tiny_codec.decode(damaged, strict=True)


def test_every_single_bit_flip_is_caught(tiny_codec, sample):
    """All 8 bits of every byte of the file: the outcome is the one its region calls for."""
    data, chunks = sample.data, sample.chunks
    hypr_end = chunks[2].end
    for position in range(len(data)):
        region = next((c for c in chunks if c.start <= position < c.end), None)
        for bit in range(8):
            damaged = flip(data, position, bit)
            if position < 8:
                expected = sicc.NotSicError
            elif position == 8:
                expected = sicc.UnsupportedError  # the version byte: checked before the CRC (spec)
            elif position < container.HEADER_SIZE:
                expected = sicc.CorruptError
            elif position < hypr_end:  # ICCP, EXIF, HYPR: nothing decodable without them
                length_field = region.start + 4 <= position < region.start + 8
                expected = (sicc.CorruptError, sicc.TruncatedError) if length_field else sicc.CorruptError
            else:
                level = chunks.index(region) - 2
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    parsed = tiny_codec.parse(damaged)
                assert len(parsed.levels) == level - 1, (position, bit)
                assert len(caught) == 1 and f"level {level}" in str(caught[0].message), (position, bit)
                if not region.start + 4 <= position < region.start + 8:  # not the length: the CRC fails
                    assert caught[0].category is sicc.CorruptLevelWarning, (position, bit)
                continue
            with pytest.raises(sicc.SiccError) as raised:
                tiny_codec.decode(damaged)
            assert isinstance(raised.value, expected), (position, bit, raised.value)


def test_header_and_prefix_chunk_flips_name_what_is_damaged(tiny_codec, sample):
    with pytest.raises(sicc.CorruptError, match="header is corrupt"):
        tiny_codec.decode(flip(sample.data, 14))  # width
    with pytest.raises(sicc.NotSicError, match="not a SIC file"):
        tiny_codec.decode(flip(sample.data, 3))
    for chunk in sample.chunks[:3]:
        with pytest.raises(sicc.CorruptError, match=f"{chunk.kind.decode()} chunk is corrupt"):
            tiny_codec.decode(flip(sample.data, chunk.end - 5))  # last payload byte


def test_cli_corrupt_level_warns_and_strict_fails(tmp_path, sample, tiny_weights):
    damaged = tmp_path / "damaged.sic"
    damaged.write_bytes(flip(sample.data, sample.levels[7].start + 9))
    out = tmp_path / "out.png"
    weights = ["--weights", str(tiny_weights)]
    result = cli_inprocess(["decode", str(damaged), "-o", str(out), *weights])
    assert result.code == 0 and out.exists()
    assert result.stderr_lines[0] == (
        f"sicc: warning: {damaged}: level 7 is corrupt (checksum mismatch); decoding the 6 levels before it")
    assert len(result.stderr_lines) == 2 and result.stderr_lines[1].startswith(f"{out}: 64x64 from 6/16 levels")
    out.unlink()
    assert_error(cli_inprocess(["decode", str(damaged), "-o", str(out), "--strict", *weights]), 4,
                 "level 7 is corrupt")
    assert not out.exists()
    report = cli_inprocess(["info", str(damaged)])  # the report, then an error naming the level (issue #47)
    assert report.code == 4 and b"level 7 is corrupt" in report.stdout and "level 7 is corrupt" in report.stderr


# -- forged headers (valid CRC) ---------------------------------------------------------------
def peak_allocation(fn, *args, **kwargs) -> int:
    """Peak bytes Python allocated while ``fn`` ran (its exception, if any, is swallowed)."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(*args, **kwargs)
    except sicc.SiccError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_forged_size_is_refused_before_allocation(tiny_codec, sample):
    """A 2^20 x 2^20 header: ImageTooLargeError under the default limit, with almost no memory used."""
    forged = forge_header(sample.data, width=1 << 20, height=1 << 20)
    with pytest.raises(sicc.ImageTooLargeError, match=f"over the limit of {sicc.MAX_IMAGE_PIXELS} "):
        tiny_codec.decode(forged)
    assert peak_allocation(tiny_codec.decode, forged) < 1 << 20
    with pytest.raises(sicc.ImageTooLargeError):  # info and truncate apply the budget too (issue 47)
        sicc.info(forged)
    assert sicc.info(forged, max_pixels=1 << 42).width == 1 << 20  # info reads the structure only


@pytest.mark.parametrize("fields,error,message", [
    ({"width": 0}, sicc.CorruptError, "outside 1..1048576"),
    ({"height": (1 << 20) + 1}, sicc.CorruptError, "outside"),
    ({"width": 0xFFFFFFFF, "height": 0xFFFFFFFF}, sicc.CorruptError, "outside"),
    ({"levels": 0}, sicc.CorruptError, "level count 0"),
    ({"levels": 8}, sicc.UnsupportedError, "declares 8 levels for model"),
    ({"model_id": 1}, sicc.UnsupportedError, "encoded with model"),
    ({"flags": 4}, sicc.UnsupportedError, "flags"), ({"flags": 0x81}, sicc.UnsupportedError, "flags"),
    ({"reserved": 0x80}, sicc.UnsupportedError, "flags"),
    ({"version": 0}, sicc.UnsupportedError, "version 0"),
])
def test_forged_header_fields(fields, error, message, tiny_codec, sample):
    with pytest.raises(error, match=message):
        tiny_codec.decode(forge_header(sample.data, **fields))


def test_more_levels_than_the_header_declares(sample):
    """A header declaring 3 model levels over a file with 16: info stops at level 4 and names it."""
    info = sicc.info(forge_header(sample.data, levels=3))
    assert len(info.levels) == 3 and info.corrupt_level == 4
    with pytest.raises(sicc.CorruptError, match="more levels than the model's 3"):
        container.parse(forge_header(sample.data, levels=3), strict=True)


def test_pixel_limit_is_configurable(tiny_codec, sample, monkeypatch):
    """max_pixels= wins; else sicc.MAX_IMAGE_PIXELS is read at call time (None disables it). The
    64x64 sample is coded centred on a 128x128 canvas (issue #47): the budget counts the canvas."""
    with pytest.raises(sicc.ImageTooLargeError, match=r"\(padded to 128x128\) = 16384 pixels, over the limit of 16383"):
        tiny_codec.decode(sample.data, max_pixels=16383)
    assert tiny_codec.decode(sample.data, max_pixels=16384, spread=0.0)[0].size == (64, 64)
    monkeypatch.setattr(sicc, "MAX_IMAGE_PIXELS", 16000)
    with pytest.raises(sicc.ImageTooLargeError, match="limit of 16000"):
        tiny_codec.decode(sample.data)
    assert tiny_codec.decode(sample.data, max_pixels=17000, spread=0.0)[0].size == (64, 64)
    monkeypatch.setattr(sicc, "MAX_IMAGE_PIXELS", None)
    assert tiny_codec.decode(forge_header(sample.data, width=60), spread=0.0)[0].size == (60, 64)


def test_cli_max_pixels(tmp_path, sample, tiny_weights):
    path = tmp_path / "in.sic"
    path.write_bytes(sample.data)
    out = tmp_path / "out.png"
    weights = ["--weights", str(tiny_weights)]
    assert_error(cli_inprocess(["decode", str(path), "-o", str(out), "--max-pixels", "16383", *weights]), 4,
                 "over the limit of 16383", "--max-pixels")  # 64x64, centred on a 128x128 canvas
    assert not out.exists()
    assert cli_inprocess(["decode", str(path), "-o", str(out), "--max-pixels", "16384", *weights]).code == 0
    path.write_bytes(forge_header(sample.data, width=1 << 20, height=1 << 20))
    assert_error(cli_inprocess(["decode", str(path), "-o", str(out), *weights]), 4, "over the limit")


# -- forged chunk lengths ---------------------------------------------------------------------
@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 1 << 20])
def test_chunk_length_past_the_end_is_a_cut_not_an_allocation(length, tiny_codec, sample):
    """HYPR claiming gigabytes: TruncatedError; level 5 claiming them: a cut inside level 5
    (levels 1-4 decode). Either way nothing near the claimed size is allocated."""
    import struct

    hypr = bytearray(sample.data)
    struct.pack_into("<I", hypr, sample.chunks[2].start + 4, length)
    with pytest.raises(sicc.TruncatedError, match="HYPR"):
        tiny_codec.decode(bytes(hypr))
    assert peak_allocation(tiny_codec.decode, bytes(hypr)) < 1 << 20

    level5 = bytearray(sample.data)
    struct.pack_into("<I", level5, sample.levels[5].start + 4, length)
    pixels, warned = decode_collecting_warnings(tiny_codec, bytes(level5))
    assert [type(w.message) for w in warned] == [sicc.TruncatedFileWarning]
    assert "truncated inside level 5" in str(warned[0].message)
    assert np.array_equal(pixels, sample.reference[4])
    assert peak_allocation(container.parse, bytes(level5)) < 1 << 20
    with pytest.raises(sicc.TruncatedError, match="level 5"):
        tiny_codec.decode(bytes(level5), strict=True)


def test_level_with_valid_crc_but_undecodable_payload(tiny_codec):
    """A forged level (CRC recomputed) that the range decoder rejects is named like a CRC
    failure: by default a warning and the levels before it; strict raises."""
    from tests.fuzz import file_with_symbols

    data = file_with_symbols(tiny_codec, 64, 64, seed=3)
    parsed = container.parse(data)
    levels = list(parsed.levels)
    levels[4] = b"\xff" * 64  # 16 words of garbage, decodes to an invalid state
    forged = container.write(parsed.header, parsed.hyper, levels)
    with pytest.raises(sicc.CorruptError, match="level 5 is corrupt"):
        tiny_codec.decode(forged, strict=True, spread=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = tiny_codec.decode(forged, spread=0.0)[0]
    assert any("level 5 is corrupt" in str(w.message) for w in caught)
    expected = tiny_codec.decode(sicc.truncate(data, level=4), spread=0.0)[0]
    assert np.array_equal(np.asarray(image), np.asarray(expected))
