"""Small images keep their colour (issue #47): images of at most 64x64 are centred on a canvas one
64-pixel block larger each way (header flag bit 1, formats/sic-v1.md, "Geometry"), so no pixel
lies at the canvas border; larger images, and every file written before, keep the old geometry."""

from __future__ import annotations

import numpy as np
import pytest

import sicc
from sicc import container
from sicc.model.geometry import image_offset, pad_image, padded_size
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.spec_parser import read_chunks, read_header

RED = (200, 30, 30)


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (64, 64), (3, 50)])
def test_a_small_flat_image_keeps_its_colour(size):
    """The shipped model: before the change a 1x1 red came back 56 levels off and the corner of a
    flat 64x64 77 off (scripts/small_image_colour.py); now every pixel is within 16."""
    pixels = np.full((*size, 3), RED, np.uint8)
    data = sicc.encode(pixels)
    assert read_header(data)["flags"] & container.FLAG_CENTRED
    decoded = np.asarray(sicc.decode(data, spread=0.0)[0].convert("RGB")).astype(int)
    assert decoded.shape == (*size, 3)
    assert np.abs(decoded - np.array(RED)).max() <= 16, decoded.reshape(-1, 3)[:4]


def test_the_centred_canvas_follows_the_spec():
    assert padded_size(1, 1, centred=True) == (128, 128) and image_offset(1, 1, True) == (63, 63)
    assert padded_size(64, 64, centred=True) == (128, 128) and image_offset(64, 64, True) == (32, 32)
    assert padded_size(50, 3, centred=True) == (128, 128) and image_offset(50, 3, True) == (39, 62)
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    canvas = pad_image(pixels, centred=True)
    top, left = image_offset(2, 3, True)
    assert np.array_equal(canvas[top : top + 2, left : left + 3], pixels)
    rows = np.clip(np.arange(128) - top, 0, 1)
    cols = np.clip(np.arange(128) - left, 0, 2)
    assert np.array_equal(canvas, pixels[rows][:, cols])  # edge replication on all four sides


def test_larger_images_and_old_files_keep_the_old_geometry(tiny_codec, small_file, small_image):
    """72x100 (the golden files' size) is not centred: the bytes are what they were."""
    assert read_header(small_file)["flags"] == 0
    assert tiny_codec.encode(small_image) == small_file
    assert read_header(tiny_codec.encode(np.zeros((65, 10, 3), np.uint8)))["flags"] == 0


def test_a_centred_file_is_budgeted_and_bounded_by_its_canvas(tiny_codec):
    data = tiny_codec.encode(np.full((64, 64, 3), 7, np.uint8))
    assert container.padded_pixels(64, 64, container.FLAG_CENTRED) == 128 * 128
    with pytest.raises(sicc.ImageTooLargeError, match="padded to 128x128"):
        tiny_codec.decode(data, max_pixels=64 * 64)
    with pytest.raises(sicc.ImageTooLargeError, match="padded to 128x128"):
        tiny_codec.encode(np.full((64, 64, 3), 7, np.uint8), max_pixels=64 * 64)
    hyper = read_chunks(data)[0]
    assert hyper.kind == "HYPR" and len(hyper.payload) > 0
    assert len(data) <= container.max_file_bytes(64, 64, 16, container.FLAG_CENTRED)
