"""``sicc montage`` (a labelled contact sheet of levels and samples) and the Pillow plugin's save
(issue #12)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc.contact_sheet import GAP, LABEL_HEIGHT, contact_sheet
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess
from tests.conftest import synthetic_image


def tile(sheet: Image.Image, row: int, column: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture and the label strip of one cell of a sheet."""
    x, y = GAP + column * (width + GAP), GAP + row * (height + LABEL_HEIGHT + GAP)
    pixels = np.asarray(sheet)
    return pixels[y : y + height, x : x + width], pixels[y + height : y + height + LABEL_HEIGHT, x : x + width]


def test_contact_sheet_places_each_level_and_sample(tiny_codec, small_file, small_image):
    """Row r = level r, column k = sample k of the seed, the original first; every cell has a
    label (ink in its strip); the complete level shows one picture (nothing to sample)."""
    levels = [1, 3, 16]
    original = Image.fromarray(small_image)
    sheet = contact_sheet(tiny_codec, small_file, levels=levels, samples=2, seed=5, original=original)
    h, w = small_image.shape[:2]
    assert sheet.size == (3 * (w + GAP) + GAP, 3 * (h + LABEL_HEIGHT + GAP) + GAP)
    picture, label = tile(sheet, 0, 0, w, h)
    assert np.array_equal(picture, small_image) and label.min() < 100
    for row, level in enumerate(levels):
        expected = tiny_codec.decode(small_file, samples=1 if level == 16 else 2, seed=5, level=level)
        for k, image in enumerate(expected):
            picture, label = tile(sheet, row, 1 + k, w, h)
            assert np.array_equal(picture, np.asarray(image)), (level, k)
            assert label.min() < 100, "no label"
    assert (tile(sheet, 2, 2, w, h)[0] == 255).all()  # level 16: one picture only
    assert (tile(sheet, 1, 0, w, h)[0] == 255).all()  # the original once, in the first row


def test_montage_command(tmp_path, tiny_weights, small_file, small_image):
    sic = tmp_path / "in.sic"
    sic.write_bytes(small_file)
    Image.fromarray(small_image).save(tmp_path / "orig.png")
    out = tmp_path / "sheet.png"
    weights = ["--weights", str(tiny_weights)]
    result = cli_inprocess(["montage", str(sic), "-o", str(out), "--levels", "1,2,4,8,16", "--samples", "3",
                            "--original", str(tmp_path / "orig.png"), "--tile-width", "50", *weights])
    assert result.code == 0, result.stderr
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.width == 4 * (50 + GAP) + GAP
        assert sheet.height == 5 * (36 + LABEL_HEIGHT + GAP) + GAP
    default = cli_inprocess(["montage", str(sic), "-o", str(tmp_path / "d.png"), "--samples", "1", *weights])
    assert default.code == 0  # levels 1, 2, 4, 8, 16
    assert Image.open(tmp_path / "d.png").height == 5 * (72 + LABEL_HEIGHT + GAP) + GAP
    assert_error(cli_inprocess(["montage", str(sic), "-o", str(out), "--levels", "0,3", *weights]), 2, "1..16")
    cut = tmp_path / "cut.sic"
    cut.write_bytes(sicc.truncate(small_file, level=2))
    assert_error(cli_inprocess(["montage", str(cut), "-o", str(out), "--levels", "1,4", *weights]), 2,
                 "level 4 is not in the file")
    assert_error(cli_inprocess(["montage", str(sic), "-o", str(out), "--original", str(tmp_path / "no.png"),
                                *weights]), 3, "no.png")
    assert_error(cli_inprocess(["montage", str(tmp_path / "orig.png"), "-o", str(out), *weights]), 4,
                 "is a PNG image")


# -- Pillow plugin: save ---------------------------------------------------------------------
def test_pillow_saves_sic_with_a_rate(tmp_path):
    """img.save("x.sic", bpp=...) writes what sicc.encode writes (the shipped model); the
    extension alone picks the format; a gray image stays gray; bad options are refused."""
    image = Image.fromarray(synthetic_image(64, 80, seed=6))
    path = tmp_path / "x.sic"
    image.save(path, bpp=0.5)
    assert path.read_bytes() == sicc.encode(image, bpp=0.5)
    assert len(path.read_bytes()) * 8 <= 0.5 * 64 * 80
    with Image.open(path) as reopened:
        assert reopened.format == "SIC" and reopened.size == (80, 64) and reopened.mode == "RGB"
    image.save(tmp_path / "l4.sic", levels=4)
    assert len(sicc.info((tmp_path / "l4.sic").read_bytes()).levels) == 4
    image.convert("L").save(tmp_path / "gray.sic")
    with Image.open(tmp_path / "gray.sic") as gray:
        assert gray.mode == "L"
        gray.load()
        assert gray.size == (80, 64)
    with pytest.raises(ValueError, match="unknown SIC save option"):
        image.save(tmp_path / "bad.sic", quality=90)
    with pytest.raises(ValueError, match="smallest file with level 1"):
        image.save(tmp_path / "tiny.sic", bpp=0.001)
    assert not (tmp_path / "bad.sic").exists() and not (tmp_path / "tiny.sic").exists()


# -- bounded memory (issue #47, defect 8) -----------------------------------------------------
def test_a_sheet_over_the_pixel_budget_is_refused_before_the_model_loads(tmp_path, tiny_codec):
    """A 1x2048 file with --tile-width 256 would make a sheet of billions of pixels: exit 2, one
    line, no output, and before the model is loaded (the weights named here do not exist)."""
    strip = tmp_path / "strip.sic"
    strip.write_bytes(tiny_codec.encode(np.full((2048, 1, 3), 100, np.uint8)))
    out = tmp_path / "sheet.png"
    result = cli_inprocess(["montage", strip, "-o", out, "--tile-width", 256, "--weights", tmp_path / "none.npz"])
    assert_error(result, 2, str(strip), "contact sheet would be", "over the pixel budget of 67108864")
    assert not out.exists()
    with pytest.raises(sicc.SiccError, match="over the pixel budget of 1000"):
        contact_sheet(tiny_codec, strip.read_bytes(), tile_width=16, max_pixels=1000)


class _Counting:
    """A codec whose decode_iter records each image it yields (weakly) and, before yielding the next,
    the most earlier images still alive: 0 when each was dropped before the next was made."""

    def __init__(self, codec):
        self.codec, self.alive, self.most = codec, [], 0

    def decode_iter(self, *args, **kwargs):
        import gc
        import weakref

        for image in self.codec.decode_iter(*args, **kwargs):
            gc.collect()
            self.most = max(self.most, sum(ref() is not None for ref in self.alive))
            self.alive.append(weakref.ref(image))
            yield image
            del image


def test_the_sheet_holds_one_decoded_picture_at_a_time(tiny_codec, small_file):
    """Each picture is pasted and dropped before the next is decoded."""
    counting = _Counting(tiny_codec)
    contact_sheet(counting, small_file, levels=[1, 2, 3], samples=3)
    assert len(counting.alive) == 9 and counting.most == 0


def test_decode_iter_synthesizes_each_sample_when_asked(tiny_codec, small_file, monkeypatch):
    """The file is checked and its levels decoded by the call; each sample is synthesized only when
    the iterator reaches it, and the samples equal decode()'s."""
    calls = []
    synthesize = tiny_codec.synthesize
    monkeypatch.setattr(tiny_codec, "synthesize", lambda *a, **k: calls.append(1) or synthesize(*a, **k))
    samples = tiny_codec.decode_iter(small_file, samples=3, level=2, seed=4)
    assert calls == []
    first = next(samples)
    assert len(calls) == 1
    rest = list(samples)
    assert len(calls) == 3
    expected = tiny_codec.decode(small_file, samples=3, level=2, seed=4)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip([first, *rest], expected))
    with pytest.raises(sicc.ArgumentError, match="level 9 is not in the file"):
        tiny_codec.decode_iter(sicc.truncate(small_file, level=4), level=9)


def test_decode_samples_are_written_one_at_a_time(tmp_path, tiny_codec, small_file):
    """``sicc decode --samples N`` stages each sample before the next is synthesized: at most one
    decoded image is alive when the next is made."""
    from sicc import batch

    counting = _Counting(tiny_codec)
    source = tmp_path / "in.sic"
    source.write_bytes(small_file)
    outcome = batch.decode_file(counting, str(source), str(tmp_path / "out.png"), samples=4, level=2)
    assert len(counting.alive) == 4 and counting.most == 0
    assert sorted(p.name for p in tmp_path.glob("out-*.png")) == [f"out-{k}.png" for k in range(4)]
    assert outcome.output_bytes == sum(p.stat().st_size for p in tmp_path.glob("out-*.png"))


# -- the Pillow plugin as PNG behaves (issue #47) -------------------------------------------------
def test_plugin_info_is_filled_at_open(tmp_path, tiny_codec):
    from tests.conftest import image_with_metadata

    path = tmp_path / "m.sic"
    path.write_bytes(tiny_codec.encode(image_with_metadata(40, 56, 3, "a note", b"icc-bytes")))
    with Image.open(path) as image:  # the tiny model made it: .info must come without decoding
        assert image.info["icc_profile"] == b"icc-bytes"
        exif = Image.Exif()
        exif.load(image.info["exif"])
        assert exif[0x010E] == "a note"


def test_plugin_closes_the_file_after_load(tmp_path):
    import gc
    import warnings

    path = tmp_path / "s.sic"
    Image.fromarray(synthetic_image(32, 48)).save(path)  # the shipped model, through the plugin's save
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = Image.open(path)
        handle = image.fp
        image.load()
        assert handle.closed and image.fp is None
        del image, handle
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
