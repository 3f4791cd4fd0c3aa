"""The web bundle: what the JavaScript decoder (``web/``) fetches to decode SIC files.

A folder of plain files a static server can serve:

- ``manifest.json``: format ``sicc-web-1``, the model id, config, scale offset, the layout of
  the integer tables, and the SHA-256 and size of every other file (the decoder checks them on
  load, and checks that a SIC file's model id is the bundle's);
- ``tables.bin``: the exact probability model's integer tables, taken from the runtime's own
  :class:`~sicc.model.probability.ProbabilityModel` (so there is one home for the quantization):
  per h_s layer its integer weight and bias, per level its causal, mid and out weights and
  biases (int32, little-endian), the z frequency table (int32) and the scale table (float64);
- ``g_s.onnx``: the synthesis graph with its weights inside (the weights file stores them once,
  outside the graphs; onnxruntime-web gets one self-contained file).

Weights with level tables (:mod:`sicc.model.level_film`) give a bundle of format ``sicc-web-2``:
the same, plus ``level_film`` in the table layout, the ``scale`` and ``shift`` tables
(levels, latent) as float64 (their float32 values, exactly), which the decoder applies to each
tile before g_s (``web/src/level_film.js``). A decoder that predates them refuses such a bundle.

Weights that also have inner level tables (``sicc-weights-5``) give a bundle of format
``sicc-web-3``: ``sicc-web-2`` plus ``inner_scale`` and ``inner_shift`` in ``level_film``, the
inner tables (levels, layers, hidden) stored the same way, and a ``g_s.onnx`` that has the two
more float32 inputs ``film_gain`` and ``film_shift`` (layers, hidden). For a decode of ``L``
levels the decoder feeds them ``1 + inner_scale[L-1]`` (computed in float32) and
``inner_shift[L-1]``, and for a decode of no level ones and zeros. A decoder refuses a bundle whose
format it does not know, and one whose format and tables disagree.

The bundle is written to a temporary folder beside ``DIR`` and moved into place, so a failed
export leaves the previous bundle as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..codec import Codec
from ..model.level_film import INNER_SCALE_KEY, INNER_SHIFT_KEY, SCALE_KEY, SHIFT_KEY, LevelFilm

WEB_FORMAT = "sicc-web-1"
LEVEL_FILM_WEB_FORMAT = "sicc-web-2"
"""``sicc-web-1`` plus the level tables: the format of the bundle of weights that have them."""
INNER_FILM_WEB_FORMAT = "sicc-web-3"
"""``sicc-web-2`` plus the inner level tables and a g_s graph that takes their rows: the format of the
bundle of weights that have them."""
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""onnxruntime-web's WASM-only build: the module the page imports and the runtime it loads."""


class WebExportError(Exception):
    """The bundle cannot be written from these weights (e.g. onnx missing, tables out of range)."""


def _embedded_graph(codec: Codec, name: str) -> bytes:
    """The ONNX graph ``name`` with its external initializers replaced by their data."""
    try:
        import onnx
    except ImportError:
        raise WebExportError("the onnx package is needed to write the web bundle (pip install -e '.[dev]')") from None
    model = onnx.ModelProto()
    model.ParseFromString(codec.weights.graphs[name])
    state = codec.weights.model_state
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {entry.key: entry.value for entry in tensor.external_data}["location"]
        tensor.raw_data = np.ascontiguousarray(state[location], dtype="<f4").tobytes()
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
    return model.SerializeToString()


class _Tables:
    """Arrays appended to one little-endian binary file, each 8-byte aligned, with their layout."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, array: np.ndarray, dtype: str) -> dict:
        values = np.asarray(array)
        if dtype == "int32":
            if values.size and (np.abs(values).max() >= 2**31 or not np.array_equal(values, np.rint(values))):
                raise WebExportError("an integer table does not fit int32")
            data = values.astype("<i4").tobytes()
        else:
            data = values.astype("<f8").tobytes()
        entry = {"offset": self.size, "dtype": dtype, "shape": list(values.shape)}
        pad = (-len(data)) % 8
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        return entry


def _format(film: LevelFilm | None) -> str:
    """The bundle's format: by the level tables its weights have (a decoder refuses what it does not know)."""
    if film is None:
        return WEB_FORMAT
    return INNER_FILM_WEB_FORMAT if film.has_inner else LEVEL_FILM_WEB_FORMAT


def export_web(directory: Path, weights: Path | None = None) -> dict:
    """Write the bundle of ``weights`` (default: the shipped model) to ``directory``; return its manifest."""
    codec = Codec.load(weights)
    model = codec.probability
    tables = _Tables()
    hyper_layers = [{
        "weight": tables.add(layer.weight, "int32"), "bias": tables.add(layer.bias, "int32"),
        "transposed": layer.transposed, "stride": layer.stride, "relu": layer.relu,
    } for layer in model.hyper_layers]
    level_layers = [{
        "causal_w": tables.add(level.causal_w, "int32"), "causal_b": tables.add(level.causal_b, "int32"),
        "mid_w": tables.add(level.mid_w, "int32"), "mid_b": tables.add(level.mid_b, "int32"),
        "out_w": tables.add(level.out_w, "int32"), "out_b": tables.add(level.out_b, "int32"),
    } for level in model.level_layers]
    layout = {
        "hyper_layers": hyper_layers, "level_layers": level_layers,
        "z_frequencies": tables.add(model.z_frequencies, "int32"),
        "scale_table": tables.add(model.scales, "float64"),
    }
    film = codec.level_film
    if film is not None:  # the weights' own float32 tables (gain = 1 + scale is recomputed in float32)
        state = codec.weights.model_state
        layout["level_film"] = {"scale": tables.add(state[SCALE_KEY], "float64"),
                                "shift": tables.add(state[SHIFT_KEY], "float64")}
        if film.has_inner:  # the same way, (levels, layers, hidden); the g_s graph takes their rows
            layout["level_film"]["inner_scale"] = tables.add(state[INNER_SCALE_KEY], "float64")
            layout["level_film"]["inner_shift"] = tables.add(state[INNER_SHIFT_KEY], "float64")
    files = {"tables.bin": b"".join(tables.parts), "g_s.onnx": _embedded_graph(codec, "g_s")}
    manifest = {
        "format": _format(film),
        "model_id": codec.model_id.hex(),
        "config": {**codec.config.to_dict(), "group_size": codec.config.group_size},
        "scale_offset": model.scale_offset,
        "tables": layout,
        "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()},
    }
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    staging.chmod(0o755)
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
        staging.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def vendor_onnxruntime(dist: Path, target: Path) -> list[Path]:
    """Copy onnxruntime-web's WASM build (``ORT_FILES``) from ``dist`` into ``target``, so the page
    works offline and fetches nothing from elsewhere."""
    dist, target = Path(dist), Path(target)
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise WebExportError(f"{dist} lacks {', '.join(missing)} (run `npm ci` in web/ first)")
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ORT_FILES:
        shutil.copyfile(dist / name, target / name)
        copied.append(target / name)
    return copied
