"""Level tables (issue 48, item 4: g_s told which level it decodes from; sicc.model.level_film): a
weights file may carry a per-level, per-latent-channel scale and shift applied to the latent before
g_s. Zero tables are the identity, tables change the decode of their level only and are covered by
the model id, files without them decode as before, and bad tables are refused in one line. No torch
needed (the tables are added to the committed tiny model); the training side is
tests/test_train_level_film.py, the browser decoder's web/test/level_film.test.js."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import sicc
from sicc.codec import Codec
from sicc.errors import WeightsError
from sicc.model.level_film import SCALE_KEY, SHIFT_KEY, film_transform
from sicc.model.weights import (LEVEL_FILM_WEIGHTS_FORMAT, WEIGHTS_FORMAT, compute_model_id, graph_digest,
                                load_weights, write_weights)
from tests.clitools import assert_error, cli_inprocess
from tests.conftest import TINY_GOLDEN_WEIGHTS, synthetic_image
from tests.web_reference import with_level_tables

DATA = Path(__file__).resolve().parent / "data"
HEADER_ID = slice(20, 28)  # the model id in the SIC header (formats/sic-v1.md)
HEADER_CRC = slice(28, 32)


def _pixels(codec: Codec, data: bytes, **kw) -> np.ndarray:
    return np.asarray(codec.decode(data, **kw)[0])


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _forge(dst: Path, state_edit, form: str | None = None, src: Path = TINY_GOLDEN_WEIGHTS) -> Path:
    """The tiny model with its state edited by ``state_edit(state)``, written self-consistently (the
    model id recomputed, as a forger would; the tables stored with the dtype they were given), in
    format ``form`` if given."""
    weights = load_weights(src)
    state = dict(weights.model_state)
    state_edit(state)
    model_id = compute_model_id(weights.config, state, weights.z_frequencies, weights.scale_table,
                                graph_digest(weights.graphs, weights.graph_keys, weights.scale_offset))
    write_weights(dst, dataclasses.replace(weights, model_state=state, model_id=model_id))
    with zipfile.ZipFile(dst) as archive:
        files = {info.filename: archive.read(info) for info in archive.infolist()}
    for key in (SCALE_KEY, SHIFT_KEY):
        if key in state:  # write_weights stores float32: a forger need not
            files[f"model/{key}.npy"] = _npy(state[key])
    if form is not None:
        manifest = json.loads(bytes(np.load(io.BytesIO(files["manifest.npy"]))).decode())
        manifest["format"] = form
        files["manifest.npy"] = _npy(np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), np.uint8))
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return dst


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return synthetic_image(72, 100, seed=3)


def test_zero_tables_are_the_identity_in_bytes_and_pixels(tmp_path, image):
    plain = Codec.load(TINY_GOLDEN_WEIGHTS)
    zero = Codec.load(with_level_tables(TINY_GOLDEN_WEIGHTS, tmp_path / "zero.npz", size=0.0))
    assert zero.weights.model_state[SCALE_KEY].any() == 0 and zero.level_film is not None
    assert zero.model_id != plain.model_id  # the tables are part of the model, even at zero
    a, b = plain.encode(image), zero.encode(image)
    assert len(a) == len(b) and a[:20] == b[:20] and a[32:] == b[32:]  # the same file but its model id (and CRC)
    assert b[HEADER_ID] == zero.model_id
    for kw in (dict(level=1), dict(level=3), dict(), dict(level=2, seed=5, spread=2.0)):
        assert np.array_equal(_pixels(plain, a, **kw), _pixels(zero, b, **kw)), kw


def test_tables_change_the_decode_of_their_level_only_and_the_model_id(tmp_path, image):
    def row_of_level_3(state, value=0.5):
        cfg = load_weights(TINY_GOLDEN_WEIGHTS).config
        state[SCALE_KEY] = np.zeros((cfg.levels, cfg.latent), np.float32)
        state[SHIFT_KEY] = np.zeros((cfg.levels, cfg.latent), np.float32)
        state[SCALE_KEY][2] = value
        state[SHIFT_KEY][2] = -value

    zero = Codec.load(with_level_tables(TINY_GOLDEN_WEIGHTS, tmp_path / "zero.npz", size=0.0))
    film = Codec.load(_forge(tmp_path / "film.npz", row_of_level_3))
    other = Codec.load(_forge(tmp_path / "other.npz", lambda s: row_of_level_3(s, 0.25)))
    assert len({zero.model_id, film.model_id, other.model_id, load_weights(TINY_GOLDEN_WEIGHTS).model_id}) == 4
    data = zero.encode(image)
    forged = bytearray(data)  # the same coded levels under the other model's id
    forged[HEADER_ID] = film.model_id
    import zlib

    forged[HEADER_CRC] = zlib.crc32(bytes(forged[:28])).to_bytes(4, "little")
    forged = bytes(forged)
    assert film.parse(forged).header.model_id == film.model_id
    for level in (1, 2, 4, 16):
        assert np.array_equal(_pixels(zero, data, level=level), _pixels(film, forged, level=level)), level
    assert not np.array_equal(_pixels(zero, data, level=3), _pixels(film, forged, level=3))
    # and a file of the zero-table model is refused by the other (its id names the tables)
    with pytest.raises(sicc.UnsupportedError):
        film.decode(data)


def test_the_runtime_applies_the_affine_of_the_level_to_what_g_s_sees(tmp_path):
    film = Codec.load(with_level_tables(TINY_GOLDEN_WEIGHTS, tmp_path / "film.npz"))
    state, seen = film.weights.model_state, []
    g_s = film_transform(lambda x: seen.append(x) or x, film.level_film, 5)
    y = np.random.default_rng(0).integers(-4, 5, (1, film.config.latent, 3, 2)).astype(np.float32)
    g_s(y)
    gain = (np.float32(1) + state[SCALE_KEY][4]).astype(np.float32)
    expected = y * gain[None, :, None, None] + state[SHIFT_KEY][4][None, :, None, None]
    assert seen[0].dtype == np.float32 and np.array_equal(seen[0], expected)
    assert film_transform(film.transforms.g_s, film.level_film, 0) == film.transforms.g_s  # no level decoded
    assert film_transform(film.transforms.g_s, None, 5) == film.transforms.g_s  # no tables


def test_files_without_tables_decode_as_before():
    """The golden files' tiny model has no tables and keeps its id; its golden pixels are checked by
    tests/test_golden.py."""
    tiny = Codec.load(TINY_GOLDEN_WEIGHTS)
    assert tiny.level_film is None and tiny.model_id.hex() == "bc7e96de13fd5094"
    assert film_transform(tiny.transforms.g_s, tiny.level_film, 3) == tiny.transforms.g_s


def test_a_weights_file_with_tables_parses_and_says_so(tmp_path):
    path = with_level_tables(TINY_GOLDEN_WEIGHTS, tmp_path / "film.npz")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"model/level_film.scale.npy", "model/level_film.shift.npy"} <= names
    weights = load_weights(path)
    cfg = weights.config
    assert weights.model_state[SCALE_KEY].shape == (cfg.levels, cfg.latent) == weights.model_state[SHIFT_KEY].shape
    assert weights.model_state[SCALE_KEY].dtype == np.float32 and weights.model_state[SCALE_KEY].any()
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(bytes(np.load(io.BytesIO(archive.read("manifest.npy")))).decode())
    assert manifest["format"] == LEVEL_FILM_WEIGHTS_FORMAT and manifest["model_id"] == weights.model_id.hex()
    assert WEIGHTS_FORMAT != LEVEL_FILM_WEIGHTS_FORMAT


def _table(value=0.0, shape=(16, 32), dtype=np.float32):
    return np.full(shape, value, dtype=dtype)


BAD_TABLES = {
    "wrong shape": (lambda s: s.update({SCALE_KEY: _table(shape=(16, 31)), SHIFT_KEY: _table(shape=(16, 31))}),
                    None, "not float32 (16, 32)"),
    "transposed": (lambda s: s.update({SCALE_KEY: _table(shape=(32, 16)), SHIFT_KEY: _table()}),
                   None, "level_film.scale is float32 (32, 16)"),
    "float64": (lambda s: s.update({SCALE_KEY: _table(), SHIFT_KEY: _table(dtype=np.float64)}),
                None, "level_film.shift is float64"),
    "not finite": (lambda s: s.update({SCALE_KEY: _table(), SHIFT_KEY: _table(np.nan)}),
                   None, "not finite"),
    "one table": (lambda s: s.update({SCALE_KEY: _table()}), None, "has level_film.scale but not level_film.shift"),
    "tables in a -3 file": (lambda s: s.update({SCALE_KEY: _table(), SHIFT_KEY: _table()}), WEIGHTS_FORMAT,
                            "with level tables"),
    "a -4 file without": (lambda s: None, LEVEL_FILM_WEIGHTS_FORMAT, "without its level tables"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_are_refused_in_one_line(tmp_path, case):
    edit, form, message = BAD_TABLES[case]
    bad = _forge(tmp_path / "bad.npz", edit, form)
    with pytest.raises(WeightsError, match="level") as caught:
        load_weights(bad)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    result = cli_inprocess(["decode", DATA / "golden-tiny.sic", "-o", tmp_path / "out.png", "--weights", bad])
    assert_error(result, 4, message)
    assert not (tmp_path / "out.png").exists()


def test_the_web_bundle_carries_the_tables(tmp_path):
    pytest.importorskip("onnx")
    from sicc.export.web import LEVEL_FILM_WEB_FORMAT, WEB_FORMAT, export_web

    path = with_level_tables(TINY_GOLDEN_WEIGHTS, tmp_path / "film.npz")
    manifest = export_web(tmp_path / "film", path)
    assert manifest["format"] == LEVEL_FILM_WEB_FORMAT and manifest["model_id"] == load_weights(path).model_id.hex()
    tables = (tmp_path / "film" / "tables.bin").read_bytes()
    state = load_weights(path).model_state
    for name, key in (("scale", SCALE_KEY), ("shift", SHIFT_KEY)):
        entry = manifest["tables"]["level_film"][name]
        values = np.frombuffer(tables, "<f8", int(np.prod(entry["shape"])), entry["offset"]).reshape(entry["shape"])
        assert values.dtype == np.float64 and np.array_equal(values, state[key])  # the float32 values, exactly
    plain = export_web(tmp_path / "plain", TINY_GOLDEN_WEIGHTS)
    assert plain["format"] == WEB_FORMAT and "level_film" not in plain["tables"]
