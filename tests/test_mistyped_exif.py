"""EXIF blocks that parse but cannot be written back (issue #47, defect 5): a tag of the wrong type
(Orientation stored as ASCII) or a value Pillow cannot serialise (StripOffsets near 2^32). Encode
and decode drop the block with one warning, as the README says, and exit 0: never exit 1."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from sicc import container
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import cli_subprocess


def exif_block(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF-structured EXIF block of one directory: (tag, type, count, 4 value bytes)."""
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHI", tag, kind, count) + value
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


MISTYPED = {
    "ascii-orientation": exif_block([(0x0112, 2, 2, b"6\x00\x00\x00")]),  # type 2 = ASCII, should be SHORT
    "strip-offset-near-2^32": exif_block([(0x0111, 4, 1, struct.pack("<I", 0xFFFFFFF0))]),
}


@pytest.mark.parametrize("name", sorted(MISTYPED))
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_encoding_an_image_with_a_mistyped_exif_tag_drops_it(tmp_path, tiny_weights, name, suffix):
    source = tmp_path / f"in{suffix}"
    Image.fromarray(np.full((24, 40, 3), (200, 30, 30), np.uint8)).save(source, exif=b"Exif\x00\x00" + MISTYPED[name])
    result = cli_subprocess(["encode", source, "-o", tmp_path / "out.sic", "--weights", tiny_weights])
    assert result.code == 0, result.stderr
    assert "Traceback" not in result.stderr
    warning = [line for line in result.stderr_lines if line.startswith("sicc: warning:")]
    assert len(warning) == 1 and "EXIF dropped: it is damaged" in warning[0], result.stderr
    assert container.parse((tmp_path / "out.sic").read_bytes()).exif is None


@pytest.mark.parametrize("name", sorted(MISTYPED))
def test_decoding_a_file_with_a_mistyped_exif_tag_drops_it(tmp_path, tiny_weights, small_file, name):
    parsed = container.parse(small_file)
    forged = tmp_path / "in.sic"
    forged.write_bytes(container.write(parsed.header, parsed.hyper, parsed.levels, exif=MISTYPED[name]))
    for suffix in (".png", ".jpg"):  # (TIFF leaves the strip tags out anyway)
        out = tmp_path / f"out{suffix}"
        result = cli_subprocess(["decode", forged, "-o", out, "--weights", tiny_weights])
        assert result.code == 0, result.stderr
        assert f"{out}: EXIF dropped: it is damaged" in result.stderr and "Traceback" not in result.stderr
        with Image.open(out) as image:
            image.load()
            assert image.size == (100, 72) and not image.getexif().get(0x0112)


@pytest.mark.parametrize("name", sorted(MISTYPED))
def test_every_output_format_survives_a_mistyped_exif_block(name):
    """The writer itself, for each format that holds EXIF: an image and a warning, no exception."""
    import io
    import warnings

    import sicc
    from sicc.fileio import image_bytes

    image = Image.new("RGB", (8, 8), (10, 200, 30))
    image.info["exif"] = MISTYPED[name]
    for fmt in ("PNG", "JPEG", "WEBP") + (("TIFF",) if name == "ascii-orientation" else ()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = image_bytes(image, fmt, name="x")
        assert any(issubclass(w.category, sicc.SiccWarning) and "EXIF dropped" in str(w.message) for w in caught)
        with Image.open(io.BytesIO(data)) as written:
            assert written.size == (8, 8)
