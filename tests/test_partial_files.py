"""Every byte prefix of a real file (a partial download) behaves as the format promises (issue #6).

A prefix that holds the header and the hyperprior decodes exactly its complete
levels: the same pixels as decoding the whole file from that many levels, with
a TruncatedFileWarning when the cut falls inside a level and no warning at a
chunk boundary. A shorter prefix raises TruncatedError; a prefix of a valid file
is never called "not a SIC file".
"""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

import sicc
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess
from tests.conftest import decode_collecting_warnings, synthetic_image


@pytest.fixture(scope="module")
def square_file(tiny_codec) -> bytes:
    return tiny_codec.encode(synthetic_image(64, 64, seed=11))


@pytest.fixture(scope="module")
def metadata_file(tiny_codec) -> bytes:
    """100x72 with ICCP and EXIF chunks before the hyperprior."""
    image = Image.fromarray(synthetic_image(72, 100, seed=12))
    exif = Image.Exif()
    exif[0x010E] = "partial download test"
    image.info["icc_profile"] = b"icc-profile-bytes" * 5
    image.info["exif"] = exif.tobytes()
    return tiny_codec.encode(image)


def boundaries(data: bytes) -> list[int]:
    """Byte offsets after the hyperprior and after each level."""
    info = sicc.info(data)
    return [info.base_bytes] + [lv.cumulative_bytes for lv in info.levels]


def test_every_prefix_decodes_its_complete_levels(tiny_codec, square_file):
    """All len+1 prefixes: TruncatedError before the hyperprior ends, else the pixels of the
    complete levels (compared with a decode of the whole file at that level)."""
    ends = boundaries(square_file)
    assert len(ends) == 17 and ends[-1] == len(square_file)
    reference = [decode_collecting_warnings(tiny_codec, square_file, level=k)[0] for k in range(17)]
    for n in range(len(square_file) + 1):
        prefix = square_file[:n]
        if n < ends[0]:
            with pytest.raises(sicc.TruncatedError):
                tiny_codec.decode(prefix, spread=0.0)
            continue
        complete = sum(end <= n for end in ends[1:])
        pixels, warned = decode_collecting_warnings(tiny_codec, prefix)
        assert np.array_equal(pixels, reference[complete]), f"prefix {n}: not the {complete}-level decode"
        assert len(sicc.info(prefix).levels) == complete
        no_level = [sicc.NoLevelWarning] if complete == 0 else []
        if n in ends:
            assert [type(w.message) for w in warned] == no_level, f"prefix {n} ends at a chunk boundary"
        else:
            assert [type(w.message) for w in warned] == [sicc.TruncatedFileWarning] + no_level, n
            assert f"truncated inside level {complete + 1}" in str(warned[0].message)
            assert f"the {complete} complete levels" in str(warned[0].message)


def test_strict_refuses_a_cut_inside_a_level(tiny_codec, square_file):
    ends = boundaries(square_file)
    for n in (ends[3], ends[3] + 1, ends[3] + 8, ends[4] - 1):
        if n == ends[3]:
            decode_collecting_warnings(tiny_codec, square_file[:n], strict=True)  # a boundary is a valid file
        else:
            with pytest.raises(sicc.TruncatedError, match="truncated inside level 4"):
                tiny_codec.decode(square_file[:n], strict=True)


def test_short_prefixes_are_truncated_not_foreign(square_file):
    """The empty file, a partial magic, a partial header, a partial hyperprior: TruncatedError
    from info, truncate and parse alike, never NotSicError."""
    base = boundaries(square_file)[0]
    for n in range(base):
        prefix = square_file[:n]
        for call in (sicc.info, lambda d: sicc.truncate(d, level=0)):
            with pytest.raises(sicc.SiccError) as caught:
                call(prefix)
            assert type(caught.value) is sicc.TruncatedError, (n, caught.value)


def test_metadata_file_prefixes(tiny_codec, metadata_file):
    """With ICCP/EXIF chunks first: every prefix parses to its complete levels or is truncated,
    and the metadata survives in every decodable prefix."""
    ends = boundaries(metadata_file)
    for n in range(len(metadata_file) + 1):
        prefix = metadata_file[:n]
        if n < ends[0]:
            with pytest.raises(sicc.TruncatedError):
                sicc.info(prefix)
            continue
        info = sicc.info(prefix)
        assert len(info.levels) == sum(end <= n for end in ends[1:])
        assert info.truncated == (n not in ends)
        assert info.has_icc_profile and info.has_exif
    for n in (ends[0], ends[5] + 3, len(metadata_file) - 1):
        pixels, _ = decode_collecting_warnings(tiny_codec, metadata_file[:n])
        assert pixels.shape == (72, 100, 3)


def test_cli_partial_file(tmp_path, square_file, tiny_weights):
    """The CLI decodes a cut file with one warning line (exit 0), refuses it with --strict (exit 4),
    and reports a cut header as truncated (exit 4)."""
    ends = boundaries(square_file)
    cut = tmp_path / "cut.sic"
    cut.write_bytes(square_file[: ends[5] + 7])
    out = tmp_path / "out.png"
    weights = ["--weights", str(tiny_weights)]
    result = cli_inprocess(["decode", str(cut), "-o", str(out), *weights])
    assert result.code == 0 and out.exists()
    assert result.stderr_lines[0] == f"sicc: warning: {cut}: file is truncated inside level 6; decoding the 5 complete levels"
    assert len(result.stderr_lines) == 2 and result.stderr_lines[1].startswith(f"{out}: 64x64 from 5/16 levels")
    out.unlink()
    assert_error(cli_inprocess(["decode", str(cut), "-o", str(out), "--strict", *weights]), 4, "level 6")
    cut.write_bytes(square_file[:5])
    assert_error(cli_inprocess(["decode", str(cut), "-o", str(out), *weights]), 4, "truncated")
    assert not out.exists()
