"""The container as a public contract: structure, metadata, prefixes, info and truncate."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import container
from tests.spec_parser import read_chunks, read_header


def test_real_file_follows_the_spec(tiny_codec, small_file, small_image):
    header = read_header(small_file)
    assert header["header_crc_ok"] and header["version"] == 1 and header["flags"] == 0
    assert (header["height"], header["width"]) == small_image.shape[:2]
    assert header["model_id"] == tiny_codec.model_id.hex()
    chunks = read_chunks(small_file)
    assert [c.kind for c in chunks] == ["HYPR"] + ["LEVL"] * 16
    assert all(c.crc_ok for c in chunks)


def test_every_chunk_boundary_is_a_valid_file(tiny_codec, small_file):
    """Truncation is a byte cut: each chunk boundary prefix decodes, with that many levels."""
    ends = [c.offset + 8 + c.length + 4 for c in read_chunks(small_file)]
    for levels, end in enumerate(ends):
        prefix = small_file[:end]
        assert len(sicc.info(prefix).levels) == levels
        assert sicc.truncate(small_file, level=levels) == prefix
        image = tiny_codec.decode(prefix, spread=0.0)[0]
        assert image.size == tuple(read_header(small_file)[k] for k in ("width", "height"))


def test_info_sizes_sum_to_the_file(small_file):
    info = sicc.info(small_file)
    assert info.base_bytes + sum(lv.bytes for lv in info.levels) == info.file_bytes == len(small_file)
    assert info.complete
    bpps = [lv.cumulative_bpp for lv in info.levels]
    assert bpps == sorted(bpps) and bpps[-1] == pytest.approx(len(small_file) * 8 / (info.width * info.height))
    assert info.to_dict()["levels"][0]["index"] == 1


def test_truncate_by_bytes_and_bpp(small_file):
    info = sicc.info(small_file)
    target = info.levels[5].cumulative_bytes
    assert sicc.truncate(small_file, max_bytes=target) == small_file[:target]
    assert sicc.truncate(small_file, max_bytes=target + 3) == small_file[:target]
    assert sicc.truncate(small_file, max_bytes=target - 1) == small_file[: info.levels[4].cumulative_bytes]
    bpp = info.levels[5].cumulative_bpp
    assert len(sicc.truncate(small_file, bpp=bpp + 1e-9)) == target
    smallest = info.levels[0].cumulative_bytes
    for budget in (info.base_bytes - 1, info.base_bytes, smallest - 1):  # a budget keeps at least level 1
        with pytest.raises(ValueError, match=f"smallest file with level 1 is {smallest} bytes"):
            sicc.truncate(small_file, max_bytes=budget)
    assert sicc.truncate(small_file, max_bytes=smallest) == small_file[:smallest]
    assert sicc.truncate(small_file, level=0) == small_file[: info.base_bytes]  # asked for on purpose
    with pytest.raises(ValueError):
        sicc.truncate(small_file, level=17)
    with pytest.raises(ValueError):
        sicc.truncate(small_file, level=2, bpp=0.1)


def test_icc_and_exif_are_carried_through(tiny_codec, small_image):
    icc = b"fake-icc-profile-bytes" * 5
    exif = Image.Exif()
    exif[0x010F] = "sicc test camera"  # Make
    buf = io.BytesIO()
    Image.fromarray(small_image).save(buf, "PNG", icc_profile=icc, exif=exif.tobytes())
    data = tiny_codec.encode(io.BytesIO(buf.getvalue()))
    kinds = [c.kind for c in read_chunks(data)]
    assert kinds[:3] == ["ICCP", "EXIF", "HYPR"]
    out = tiny_codec.decode(data, spread=0.0)[0]
    assert out.info["icc_profile"] == icc
    reread = Image.Exif()
    reread.load(out.info["exif"])
    assert reread[0x010F] == "sicc test camera"
    stripped = tiny_codec.encode(io.BytesIO(buf.getvalue()), keep_metadata=False)
    assert [c.kind for c in read_chunks(stripped)][0] == "HYPR"
    info = sicc.info(data)
    assert info.has_icc_profile and info.has_exif


def test_metadata_after_hyperprior_is_rejected(small_file):
    parsed = container.parse(small_file)
    bad = container.write(parsed.header, parsed.hyper, parsed.levels)
    cut = read_chunks(bad)[0]
    hypr_end = cut.offset + 8 + cut.length + 4
    exif_chunk = container._chunk(container.CHUNK_EXIF, b"x")
    forged = bad[:hypr_end] + exif_chunk + bad[hypr_end:]
    with pytest.raises(sicc.CorruptError):
        container.parse(forged, strict=True)


def test_model_mismatch_is_refused(tiny_codec, small_file, tmp_path):
    from tests.conftest import make_tiny_weights

    other = sicc.Codec.load(make_tiny_weights(tmp_path / "other.npz", seed=1))
    with pytest.raises(sicc.UnsupportedError, match="encoded with model"):
        other.decode(small_file)


def test_pillow_plugin_opens_sic_files(tmp_path, small_file, tiny_codec, monkeypatch):
    monkeypatch.setattr(sicc.Codec, "default", classmethod(lambda cls: tiny_codec))
    path = tmp_path / "x.sic"
    path.write_bytes(small_file)
    with Image.open(path) as im:
        assert im.format == "SIC" and im.size == (100, 72) and im.mode == "RGB"
        pixels = np.asarray(im)
    assert np.array_equal(pixels, np.asarray(tiny_codec.decode(small_file, spread=0.0)[0]))
    assert Image.MIME["SIC"] == "image/x-sic"
