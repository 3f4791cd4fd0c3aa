"""Awkward and hostile input images, through the API and the CLI (issue #6).

Each one is either converted as the README documents (alpha composited over
white with a warning, 16-bit reduced with a warning, grayscale/palette/CMYK
expanded, EXIF orientation applied) or refused with an InputImageError: one
line and exit code 3 from the CLI, never a traceback.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import container
from sicc.image_io import load_rgb
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess
from tests.conftest import synthetic_image


def png_bytes(image: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **params)
    return buf.getvalue()


def load(data: bytes):
    """load_rgb of encoded image bytes, with the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = load_rgb(io.BytesIO(data))
    return rgb, [str(w.message) for w in caught if issubclass(w.category, sicc.SiccWarning)]


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but holds a few bytes of data."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# -- refused inputs -------------------------------------------------------------------------
REFUSED = {
    "empty": (b"", "not a readable image"),
    "text": (b"this is not an image\n" * 10, "not a readable image"),
    "damaged-png": (None, "cannot read image"),  # filled in below: a PNG cut in the middle
    "bomb": (bomb_png(100_000, 100_000), "too large"),
}


@pytest.fixture(scope="module")
def refused():
    cases = dict(REFUSED)
    whole = png_bytes(Image.fromarray(synthetic_image(64, 64)))
    cases["damaged-png"] = (whole[: len(whole) // 2], "cannot read image")
    return cases


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_inputs_api(name, refused, tiny_codec):
    """The API raises InputImageError (a SiccError) with a message a person can act on."""
    data, fragment = refused[name]
    with pytest.raises(sicc.InputImageError, match=fragment):
        tiny_codec.encode(io.BytesIO(data))


def test_refused_inputs_cli(refused, tmp_path, tiny_weights):
    """The CLI: exit 3, one `sicc: error:` line, no output file, no traceback."""
    for name, (data, fragment) in refused.items():
        source = tmp_path / f"{name}.img"
        source.write_bytes(data)
        out = tmp_path / f"{name}.sic"
        result = cli_inprocess(["encode", str(source), "-o", str(out), "--weights", str(tiny_weights)])
        assert_error(result, 3, fragment)
        assert not out.exists()


def test_sicc_pixel_limit_replaces_pillows(monkeypatch, tiny_codec):
    """Files sicc opens are held to sicc.MAX_IMAGE_PIXELS, not Pillow's limits (so a raised budget
    encodes a 16384 x 16384 image); Pillow's setting is left as the caller had it."""
    data = png_bytes(Image.fromarray(synthetic_image(64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 4096 px
    assert sicc.container.parse(tiny_codec.encode(io.BytesIO(data))).header.width == 64
    assert Image.MAX_IMAGE_PIXELS == 1000
    monkeypatch.setattr(sicc, "MAX_IMAGE_PIXELS", 16383)  # 64x64 is coded on a 128x128 canvas (centred)
    with pytest.raises(sicc.InputTooLargeError, match="16384 pixels, over the limit of 16383"):
        tiny_codec.encode(io.BytesIO(data))
    with pytest.raises(sicc.ImageTooLargeError):  # one class to catch on encode and decode
        tiny_codec.encode(synthetic_image(64, 64))
    assert tiny_codec.encode(io.BytesIO(data), max_pixels=16384)  # an explicit limit wins


def test_pixel_limit_is_checked_before_decoding_pixels(tiny_codec):
    """A 16384 x 16384 PNG header over the budget is refused from the header alone: the few bytes
    of pixel data behind it would otherwise fail as a damaged file. The default budget refuses
    it too (it is 4x the default); a raised one lets Pillow find the damage."""
    with pytest.raises(sicc.InputTooLargeError, match="too large"):
        tiny_codec.encode(io.BytesIO(bomb_png(16384, 16384)), max_pixels=1000)
    with pytest.raises(sicc.InputTooLargeError, match=f"over the limit of {sicc.MAX_IMAGE_PIXELS} "):
        tiny_codec.encode(io.BytesIO(bomb_png(16384, 16384)))
    with pytest.raises(sicc.InputImageError, match="cannot read image"):
        tiny_codec.encode(io.BytesIO(bomb_png(16384, 16384)), max_pixels=1 << 28)


def test_encode_budget_counts_the_padded_size(tiny_codec, tmp_path, tiny_weights):
    """1 x 1048576 is coded as 64 x 1048576: a budget of 1048576 pixels refuses it from the header,
    in the API and the CLI, with the padded size and the budget in the message; 1024 x 1024 (no
    padding) fits the same budget."""
    with pytest.raises(sicc.InputTooLargeError, match=r"1x1048576 \(padded to 64x1048576\) = 67108864 pixels, "
                                                      r"over the limit of 1048576"):
        tiny_codec.encode(io.BytesIO(bomb_png(1, 1 << 20)), max_pixels=1 << 20)
    with pytest.raises(sicc.InputTooLargeError, match="padded to 128x128"):  # small: centred (issue #47)
        tiny_codec.encode(synthetic_image(1, 64), max_pixels=64 * 63)
    with pytest.raises(sicc.InputTooLargeError, match="padded to 128x64"):
        tiny_codec.encode(synthetic_image(1, 65), max_pixels=64 * 127)
    source = tmp_path / "tall.png"
    source.write_bytes(bomb_png(1, 1 << 20))
    result = cli_inprocess(["encode", str(source), "-o", str(tmp_path / "x.sic"), "--max-pixels", str(1 << 20),
                            "--weights", str(tiny_weights)])
    assert_error(result, 3, "padded to 64x1048576", "over the limit of 1048576", "--max-pixels")
    assert not (tmp_path / "x.sic").exists()
    with pytest.raises(sicc.InputImageError, match="cannot read image"):  # within budget: Pillow finds the damage
        tiny_codec.encode(io.BytesIO(bomb_png(1024, 1024)), max_pixels=1 << 20)


def test_image_wider_than_the_format_is_an_input_error(tiny_codec, tmp_path, tiny_weights):
    wide = np.zeros((1, container.MAX_DIMENSION + 1, 3), np.uint8)
    with pytest.raises(sicc.InputTooLargeError, match="px per side"):
        tiny_codec.encode(wide)
    source = tmp_path / "small.png"
    source.write_bytes(png_bytes(Image.fromarray(synthetic_image(64, 64))))
    result = cli_inprocess(["encode", str(source), "-o", str(tmp_path / "x.sic"), "--max-pixels", "4095",
                            "--weights", str(tiny_weights)])
    assert_error(result, 3, "over the limit of 4095")
    assert not (tmp_path / "x.sic").exists()


def test_arrays_of_the_wrong_shape_are_refused(tiny_codec):
    for array in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(sicc.InputImageError):
            tiny_codec.encode(array)


# -- documented conversions ------------------------------------------------------------------
def test_rgba_is_composited_over_white_with_a_warning():
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., :3] = (200, 40, 10)
    rgba[..., 3] = 255
    rgba[2:4, :, 3] = 0  # transparent rows
    rgba[5, :, 3] = 128  # half transparent
    rgb, warned = load(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert warned == ["alpha channel dropped: composited over white"]
    assert (rgb.pixels[2:4] == 255).all()
    assert (rgb.pixels[0] == (200, 40, 10)).all()
    half = rgb.pixels[5, 0].astype(int)
    assert np.all(np.abs(half - (np.array([200, 40, 10]) * 128 + 255 * 127) / 255) <= 1)


def test_opaque_rgba_converts_without_a_warning():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[..., 0] = 7
    rgb, warned = load(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert warned == [] and (rgb.pixels[..., 0] == 7).all()


def test_la_is_composited_over_white():
    la = Image.merge("LA", [Image.new("L", (6, 5), 50), Image.new("L", (6, 5), 0)])
    la.putpixel((0, 0), (50, 255))
    rgb, warned = load(png_bytes(la))
    assert warned == ["alpha channel dropped: composited over white"]
    assert (rgb.pixels[0, 0] == 50).all() and (rgb.pixels[4, 5] == 255).all()


def test_sixteen_bit_grayscale_is_scaled_to_8_bits_with_a_warning():
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)  # uint16: mode I;16
    data = png_bytes(image)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    rgb, warned = load(data)
    assert len(warned) == 1 and "8-bit" in warned[0]
    assert rgb.pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (rgb.pixels[..., 0] == rgb.pixels[..., 2]).all()


def test_palette_with_transparency_is_composited():
    palette = Image.new("P", (4, 3), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 1), 1)
    data = png_bytes(palette, transparency=0)
    rgb, warned = load(data)
    assert warned == ["alpha channel dropped: composited over white"]
    assert (rgb.pixels[0, 0] == 255).all() and rgb.pixels[1, 1].tolist() == [0, 0, 255]


def test_palette_without_transparency_and_grayscale_expand_to_rgb():
    palette = Image.new("P", (3, 2), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    rgb, warned = load(png_bytes(palette))
    assert warned == [] and (rgb.pixels == (10, 20, 30)).all()
    gray = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, "L")
    rgb, warned = load(png_bytes(gray))
    assert warned == [] and rgb.pixels.shape == (3, 4, 3)
    assert (rgb.pixels[..., 0] == np.asarray(gray)).all() and (rgb.pixels[..., 1] == rgb.pixels[..., 2]).all()


def test_cmyk_jpeg_converts_to_rgb(tiny_codec):
    cmyk = Image.new("CMYK", (20, 12), (0, 255, 255, 0))  # pure red in CMYK
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    rgb, warned = load(buf.getvalue())
    assert rgb.pixels.shape == (12, 20, 3) and warned == []
    red = rgb.pixels.reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert sicc.info(tiny_codec.encode(io.BytesIO(buf.getvalue()))).width == 20


@pytest.mark.parametrize("height,width", [(1, 1), (1, 37), (41, 1), (2, 130)])
def test_degenerate_sizes_round_trip(height, width, tiny_codec, tmp_path, tiny_weights):
    """1x1, 1xN, Nx1: encoded, decoded back at the same size, by the API and the CLI."""
    pixels = synthetic_image(height, width)
    data = tiny_codec.encode(pixels)
    info = sicc.info(data)
    assert (info.width, info.height) == (width, height)
    assert tiny_codec.decode(data, level=3)[0].size == (width, height)
    source = tmp_path / "in.png"
    Image.fromarray(pixels).save(source)
    out = tmp_path / "out.sic"
    result = cli_inprocess(["encode", str(source), "-o", str(out), "--weights", str(tiny_weights)])
    assert result.code == 0 and out.read_bytes() == data


def test_exif_orientation_is_applied(tiny_codec, tmp_path, tiny_weights):
    """A JPEG stored 40x24 with orientation 6 (rotate 90) encodes as a 24x40 image."""
    stored = Image.fromarray(synthetic_image(24, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    data = tiny_codec.encode(io.BytesIO(buf.getvalue()))
    info = sicc.info(data)
    assert (info.width, info.height) == (24, 40)
    kept = Image.Exif()
    kept.load(container.parse(data).exif)
    assert kept.get(0x0112, 1) == 1  # EXIF kept, orientation reset: a viewer must not rotate again
    source = tmp_path / "rotated.jpg"
    source.write_bytes(buf.getvalue())
    out = tmp_path / "rotated.sic"
    assert cli_inprocess(["encode", str(source), "-o", str(out), "--weights", str(tiny_weights)]).code == 0
    assert (sicc.info(out.read_bytes()).width, sicc.info(out.read_bytes()).height) == (24, 40)


def test_conversion_warnings_reach_the_cli_as_one_line(tmp_path, tiny_weights):
    """An RGBA input encodes with exit 0 and one `sicc: warning:` line (none with -q)."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 3] = 100
    source = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(source)
    out = tmp_path / "alpha.sic"
    result = cli_inprocess(["encode", str(source), "-o", str(out), "--weights", str(tiny_weights)])
    assert result.code == 0 and out.exists()
    assert result.stderr_lines[0] == f"sicc: warning: {source}: alpha channel dropped: composited over white"
    assert len(result.stderr_lines) == 2 and result.stderr_lines[1].startswith(f"{out}: 16x16")  # the summary
    quiet = cli_inprocess(["encode", str(source), "-o", str(out), "-q", "--weights", str(tiny_weights)])
    assert quiet.code == 0 and quiet.stderr == ""
