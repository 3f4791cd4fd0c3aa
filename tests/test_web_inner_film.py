"""Inner level tables in the web bundle (sicc.export.web, format sicc-web-3): the bundle of weights
with inner tables carries them exactly, and its g_s graph takes their rows and computes what the
runtime's g_s computes with them. The browser decoder's side is web/test/inner_film.test.js (run
by tests/test_web.py); the tables themselves, sicc.model.level_film."""

from __future__ import annotations

import numpy as np
import pytest

from sicc.codec import Codec
from sicc.model.level_film import GAIN_INPUT, INNER_SCALE_KEY, INNER_SHIFT_KEY, SCALE_KEY, SHIFT_KEY, SHIFT_INPUT
from sicc.model.weights import load_weights
from tests.conftest import TINY_GOLDEN_WEIGHTS

pytest.importorskip("torch")  # the weights are exported by the training side
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def inner_weights(tmp_path_factory):
    from tests.web_reference import with_inner_tables

    return with_inner_tables(TINY_GOLDEN_WEIGHTS, tmp_path_factory.mktemp("inner") / "inner.npz")


def _table(tables: bytes, entry: dict) -> np.ndarray:
    return np.frombuffer(tables, "<f8", int(np.prod(entry["shape"])), entry["offset"]).reshape(entry["shape"])


def test_the_web_bundle_carries_the_inner_tables(tmp_path, inner_weights):
    from sicc.export.web import INNER_FILM_WEB_FORMAT, export_web

    weights = load_weights(inner_weights)
    manifest = export_web(tmp_path / "inner", inner_weights)
    assert manifest["format"] == INNER_FILM_WEB_FORMAT and manifest["model_id"] == weights.model_id.hex()
    tables = (tmp_path / "inner" / "tables.bin").read_bytes()
    film = manifest["tables"]["level_film"]
    assert set(film) == {"scale", "shift", "inner_scale", "inner_shift"}
    for name, key in (("scale", SCALE_KEY), ("shift", SHIFT_KEY), ("inner_scale", INNER_SCALE_KEY),
                      ("inner_shift", INNER_SHIFT_KEY)):
        values = _table(tables, film[name])
        assert film[name]["dtype"] == "float64" and list(values.shape) == list(weights.model_state[key].shape)
        assert np.array_equal(values, weights.model_state[key]) and values.any()  # the float32 values, exactly
    cfg = weights.config
    assert film["inner_scale"]["shape"] == [cfg.levels, 3, cfg.hidden]


def test_the_bundle_g_s_takes_the_rows_and_computes_the_runtime_g_s(tmp_path, inner_weights):
    import onnx
    import onnxruntime as ort

    from sicc.export.web import export_web

    export_web(tmp_path / "inner", inner_weights)
    codec = Codec.load(inner_weights)
    graph = onnx.load(str(tmp_path / "inner" / "g_s.onnx"))
    inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert inputs[GAIN_INPUT] == inputs[SHIFT_INPUT] == [3, codec.config.hidden]
    session = ort.InferenceSession(str(tmp_path / "inner" / "g_s.onnx"), providers=["CPUExecutionProvider"])
    y = np.random.default_rng(0).integers(-3, 4, (1, codec.config.latent, 5, 6)).astype(np.float32)
    outputs = []
    for level in (0, 1, 5, codec.config.levels):
        feeds = codec.level_film.inner_rows(level)
        got = session.run(None, {"input": y, **feeds})[0]
        assert np.allclose(got, codec.transforms.g_s(y, feeds), atol=1e-5), level
        outputs.append(got)
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(outputs, outputs[1:]))  # the rows matter
