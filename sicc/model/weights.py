"""The weights file: what the runtime needs, readable with numpy alone, never code.

A weights file is a ``.npz`` archive read with ``allow_pickle=False`` (a
zip of ``.npy`` arrays, each member CRC-checked by the zip layer):

- ``manifest``: UTF-8 JSON (format, config, model id, scale offset, training
  summary, and for each transform graph the state keys it reads);
- ``model/<key>``: the float32 network weights (one copy, by state-dict key), among them,
  in ``sicc-weights-4`` files only, the level tables ``model/level_film.scale`` and
  ``model/level_film.shift`` (below);
- ``z_prior/<key>``: the float state of the factorized prior of z (training only);
- ``z_frequencies``: int64 integer frequencies of z, ``scale_table``: float64 scales;
- ``graph/<name>`` for ``g_a``, ``h_a``, ``g_s``: ONNX graphs whose
  initializers are *external*, each naming its ``model/<key>``; the runtime
  hands onnxruntime those arrays, so the weights are stored once.

**Level tables** (``sicc-weights-4``): g_s told which level it decodes from. Two float32 arrays
of shape ``(levels, latent)``, ``level_film.scale`` and ``level_film.shift``: a decoder of the first
``L`` levels (1..levels) gives g_s ``y * (1 + scale[L-1]) + shift[L-1]`` per latent channel
instead of the complete latent ``y`` (:mod:`sicc.model.level_film`, the one home of that step).
A file holds both or neither; each must be float32 of exactly that shape and finite, else the
file is refused. A file with them is ``sicc-weights-4``, so a sicc that predates them refuses it
rather than decode without them; a file without them is ``sicc-weights-3`` (or 2) and decodes as
it always did. Being network weights, the tables are covered by the model id.

The model id covers every byte that affects decoding, and is recomputed on
load, never trusted, so a ``.sic`` file (which stores it) is never decoded with
another model. In ``sicc-weights-3`` and ``-4`` (what ``sicc.train export`` writes) it is
the first 8 bytes of a SHA-256 over the config, every float tensor, the z
table, the scale table and :func:`graph_digest` (the scale offset, each graph's
bytes and the state keys it reads). In ``sicc-weights-2`` (the shipped model
and older files) the graphs were left out of the id; such a file is accepted
only when its graph digest is the one recorded in ``LEGACY_GRAPH_DIGESTS`` for
its id, so its id stays what it was (``.sic`` files, golden files and
benchmark results name it) and a changed graph is refused all the same.

A weights file is also code for onnxruntime, so loading bounds it before
anything is inflated or run: at most ``MAX_MEMBERS`` members, whose declared
sizes add up to at most ``MAX_WEIGHTS_BYTES`` (checked from the zip directory;
the zip reader never inflates a member past its declared size, and its CRC is
checked), each a plain ``.npy`` array whose header agrees with its size; the
config's fields are checked (:meth:`ModelConfig.validate`); and each graph is
checked against what the runtime runs it on (:mod:`sicc.model.graph_check`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import WeightsError
from .config import ModelConfig
from .level_film import GAIN_INPUT, SHIFT_INPUT, has_inner_tables, has_tables, inner_layers, table_problem

WEIGHTS_FORMAT = "sicc-weights-3"
LEVEL_FILM_WEIGHTS_FORMAT = "sicc-weights-4"
"""``sicc-weights-3`` plus the level tables (:mod:`sicc.model.level_film`): the format of a file that has them."""
INNER_FILM_WEIGHTS_FORMAT = "sicc-weights-5"
"""``sicc-weights-4`` plus the inner level tables, and a g_s graph that takes their rows: the format of a
file that has them."""
CURRENT_FORMATS = (WEIGHTS_FORMAT, LEVEL_FILM_WEIGHTS_FORMAT, INNER_FILM_WEIGHTS_FORMAT)
"""The formats whose model id covers the graphs (what ``sicc.train export`` writes)."""
LEGACY_WEIGHTS_FORMAT = "sicc-weights-2"
LEGACY_GRAPH_DIGESTS = {
    "3b3f2723b056de3f": "eaae6c93f494b60d84bf3e739f80928cfb67a88ad9bc11a9d794b9be3fe3b610",  # the shipped model until 991dde0 (sicc/weights/sicc-default.npz then)
    "bc7e96de13fd5094": "668103e7d010873e7e70d452b4abd36037f813e4cc16421b04ec2f7382c5248c",  # tests/data/golden-tiny.npz, the golden files' tiny model
}
""":func:`graph_digest` of the ``sicc-weights-2`` files this sicc accepts, by model id (hex)."""
MAX_WEIGHTS_BYTES = 1 << 30
"""Most bytes the members of a weights file may declare, uncompressed (the shipped file: 7.3 MB)."""
MAX_MEMBERS = 4096
_ARRAY_DTYPES = frozenset({"<f4", "<f8", "<i8", "|u1"})
GRAPHS = ("g_a", "h_a", "g_s")
"""The transforms stored as ONNX graphs (input "input", output "output")."""


def default_weights_path() -> Path:
    return Path(__file__).resolve().parents[1] / "weights" / "sicc-default.npz"


@dataclass(frozen=True)
class ModelWeights:
    """Everything the codec needs from a weights file (and what training continues from)."""

    config: ModelConfig
    model_state: dict[str, np.ndarray]  # float32 arrays by state-dict key
    z_frequencies: np.ndarray  # (hyper, 2*Z_BOUND+1) int64, each row sums to 2**Z_FREQUENCY_BITS
    scale_table: np.ndarray  # float64 Gaussian scales, indexed by probability.scale_of
    scale_offset: int  # fixed-point log-scale of table entry 0's lower edge
    model_id: bytes
    graphs: dict[str, bytes] = field(default_factory=dict)  # ONNX graphs with external initializers
    graph_keys: dict[str, list[str]] = field(default_factory=dict)  # state keys each graph reads
    training: dict = field(default_factory=dict)
    z_prior_state: dict[str, np.ndarray] = field(default_factory=dict)


def compute_model_id(config: ModelConfig, model_state: Mapping[str, np.ndarray],
                     z_freq: np.ndarray, scales: np.ndarray, graphs: bytes | None = None) -> bytes:
    """First 8 bytes of SHA-256 over the config and every tensor (float32, key order), the z table
    (int64) and the scale table (float64), all little-endian, then ``graphs``, the
    :func:`graph_digest` (``sicc-weights-3``; None: the ``sicc-weights-2`` id, without it)."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for key in sorted(model_state):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(model_state[key], dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(z_freq, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(scales, dtype="<f8").tobytes())
    if graphs is not None:
        digest.update(b"graphs")
        digest.update(graphs)
    return digest.digest()[:8]


def graph_digest(graphs: Mapping[str, bytes], graph_keys: Mapping[str, list[str]], scale_offset: int) -> bytes:
    """SHA-256 over what decoding depends on besides the tensors and tables: the scale offset, and
    for each transform its ONNX graph's bytes and the state keys it reads, in GRAPHS order."""
    digest = hashlib.sha256(f"scale_offset={int(scale_offset)}".encode())
    for name in GRAPHS:
        digest.update(f"\0{name}\0{json.dumps(list(graph_keys[name]))}\0".encode())
        digest.update(hashlib.sha256(graphs[name]).digest())
    return digest.digest()


def weights_format(model_state: Mapping[str, np.ndarray]) -> str:
    """The format of a file of these network weights: by the level tables it holds."""
    if has_inner_tables(model_state):
        return INNER_FILM_WEIGHTS_FORMAT
    return LEVEL_FILM_WEIGHTS_FORMAT if has_tables(model_state) else WEIGHTS_FORMAT


def write_weights(path: Path, weights: ModelWeights) -> None:
    """Write ``weights`` atomically (a temporary file beside ``path``, then rename)."""
    manifest = {
        "format": weights_format(weights.model_state),
        "config": weights.config.to_dict(),
        "model_id": weights.model_id.hex(),
        "scale_offset": int(weights.scale_offset),
        "training": weights.training,
        "graphs": {name: {"state_keys": list(weights.graph_keys.get(name, [])),
                          "sha256": hashlib.sha256(data).hexdigest()} for name, data in weights.graphs.items()},
    }
    arrays = {"manifest": np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8)}
    arrays.update({f"model/{k}": np.ascontiguousarray(v, dtype="<f4") for k, v in weights.model_state.items()})
    arrays.update({f"z_prior/{k}": np.ascontiguousarray(v, dtype="<f4") for k, v in weights.z_prior_state.items()})
    arrays["z_frequencies"] = np.ascontiguousarray(weights.z_frequencies, dtype="<i8")
    arrays["scale_table"] = np.ascontiguousarray(weights.scale_table, dtype="<f8")
    arrays.update({f"graph/{name}": np.frombuffer(data, dtype=np.uint8) for name, data in weights.graphs.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    tmp.replace(path)


def load_weights(path: Path | str | None = None) -> ModelWeights:
    """Read and verify a weights file (the model id is recomputed, not trusted).

    Raises :class:`OSError` when the file cannot be read and
    :class:`~sicc.errors.WeightsError` when it is not a valid weights file.
    """
    path = Path(path) if path else default_weights_path()
    with open(path, "rb") as handle:  # OSError (missing, unreadable) goes to the caller as it is
        try:
            return _parse(handle, path)
        except WeightsError:
            raise
        except (zipfile.BadZipFile, ValueError, KeyError, EOFError, TypeError, UnicodeDecodeError,
                zipfile.LargeZipFile, NotImplementedError, OSError) as exc:
            raise WeightsError(f"{path}: not a valid sicc weights file ({type(exc).__name__}: {exc})") from None


def _parse(handle, path: Path) -> ModelWeights:
    arrays = _read_members(handle, path)
    if "manifest" not in arrays:
        raise WeightsError(f"{path}: not a sicc weights file (no manifest)")
    manifest = json.loads(bytes(arrays.pop("manifest")).decode("utf-8"))
    form = manifest.get("format") if isinstance(manifest, dict) else None
    if form not in (*CURRENT_FORMATS, LEGACY_WEIGHTS_FORMAT):
        raise WeightsError(f"{path}: not a sicc weights file (format {form!r} where one of "
                           f"{', '.join(repr(f) for f in CURRENT_FORMATS)} is expected)")
    try:
        config = ModelConfig.from_dict(manifest["config"], strict=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: invalid model config: {exc}") from None
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    _check_level_tables(path, form, config, model_state)
    if any(v.dtype != np.float32 for v in model_state.values()):
        raise WeightsError(f"{path}: network weights must be float32")
    if not all(np.isfinite(v).all() for v in model_state.values()):
        raise WeightsError(f"{path}: network weights must be finite numbers")
    z_freq = arrays["z_frequencies"].astype(np.int64)
    scales = arrays["scale_table"].astype(np.float64)
    scale_offset = manifest["scale_offset"]
    if not isinstance(scale_offset, int) or isinstance(scale_offset, bool) or abs(scale_offset) > 1 << 20:
        raise WeightsError(f"{path}: invalid scale offset {scale_offset!r}")
    _check_tables(path, config, z_freq, scales, scale_offset)
    graphs = {name: arrays[f"graph/{name}"].tobytes() for name in GRAPHS}
    graph_keys = {name: [str(k) for k in manifest["graphs"][name]["state_keys"]] for name in GRAPHS}
    missing = sorted({k for keys in graph_keys.values() for k in keys} - set(model_state))
    if missing:
        raise WeightsError(f"{path}: the transform graphs read weights the file lacks ({missing[0]})")
    model_id = _verified_id(path, manifest, config, model_state, z_freq, scales, graphs,
                            graph_digest(graphs, graph_keys, scale_offset))
    from .graph_check import check_graphs

    layers = inner_layers(model_state)
    inputs = {"g_s": {GAIN_INPUT: (layers, config.hidden), SHIFT_INPUT: (layers, config.hidden)}} if layers else {}
    check_graphs(path, config, graphs, graph_keys, {k: v.shape for k, v in model_state.items()}, inputs)
    return ModelWeights(
        config=config,
        model_state=model_state,
        z_frequencies=z_freq,
        scale_table=scales,
        scale_offset=scale_offset,
        model_id=model_id,
        graphs=graphs,
        graph_keys=graph_keys,
        training=dict(manifest.get("training") or {}),
        z_prior_state={k[len("z_prior/"):]: v for k, v in arrays.items() if k.startswith("z_prior/")},
    )


def _check_level_tables(path: Path, form: str, config: ModelConfig, model_state: dict) -> None:
    """The level tables: in a ``sicc-weights-4`` file both input tables, float32 (levels, latent) and
    finite, and no inner ones; in a ``sicc-weights-5`` file those and both inner tables, float32
    (levels, layers, hidden) and finite; in any other, none (a decoder that predates them would
    ignore them)."""
    if form not in (LEVEL_FILM_WEIGHTS_FORMAT, INNER_FILM_WEIGHTS_FORMAT):
        if has_tables(model_state) or has_inner_tables(model_state):
            raise WeightsError(f"{path}: a {form} file with level tables (they need {LEVEL_FILM_WEIGHTS_FORMAT!r} "
                               f"or {INNER_FILM_WEIGHTS_FORMAT!r})")
        return
    if not has_tables(model_state):
        raise WeightsError(f"{path}: a {form} file without its level tables (model/level_film.scale, .shift)")
    if form == LEVEL_FILM_WEIGHTS_FORMAT and has_inner_tables(model_state):
        raise WeightsError(f"{path}: a {form} file with inner level tables (they need {INNER_FILM_WEIGHTS_FORMAT!r})")
    if form == INNER_FILM_WEIGHTS_FORMAT and not has_inner_tables(model_state):
        raise WeightsError(f"{path}: a {form} file without its inner level tables "
                           "(model/level_film.inner_scale, .inner_shift)")
    problem = table_problem(config, model_state)
    if problem:
        raise WeightsError(f"{path}: invalid level tables: {problem}")


def _check_tables(path: Path, config: ModelConfig, z_freq: np.ndarray, scales: np.ndarray, scale_offset: int) -> None:
    """The integer tables the coder trusts: every z symbol has a non-zero frequency and each row sums
    to 2**Z_FREQUENCY_BITS (else a symbol could not be coded); the scale table and its offset are the
    ones the config defines (the same values up to the last bit, which np.exp may round otherwise)."""
    from .probability import Z_BOUND, Z_FREQUENCY_BITS, scale_table

    if z_freq.shape != (config.hyper, 2 * Z_BOUND + 1) or z_freq.min(initial=1) < 1 \
            or np.any(z_freq.sum(axis=1) != 1 << Z_FREQUENCY_BITS):
        raise WeightsError(f"{path}: invalid z frequency table (shape {z_freq.shape}: {config.hyper} rows of "
                           f"{2 * Z_BOUND + 1} positive frequencies summing to {1 << Z_FREQUENCY_BITS} are expected)")
    expected, offset = scale_table(config)
    if scale_offset != offset or scales.shape != expected.shape or not np.allclose(scales, expected, rtol=1e-6, atol=0):
        raise WeightsError(f"{path}: invalid scale table (it is not the one its config defines)")


def _verified_id(path: Path, manifest: dict, config: ModelConfig, model_state: dict, z_freq: np.ndarray,
                 scales: np.ndarray, graph_bytes: dict[str, bytes], graphs: bytes) -> bytes:
    """The model id, recomputed; a file whose bytes do not give the id it states is refused, and so
    is a ``sicc-weights-2`` file whose graphs are not the ones recorded for its id."""
    if manifest["format"] in CURRENT_FORMATS:
        for name in GRAPHS:  # name the graph that changed (the id below would catch it as well)
            if manifest["graphs"][name].get("sha256") != hashlib.sha256(graph_bytes[name]).hexdigest():
                raise WeightsError(f"{path}: its {name} graph is not the one its manifest records "
                                   f"(file altered or damaged)")
        model_id = compute_model_id(config, model_state, z_freq, scales, graphs)
        if model_id.hex() != manifest["model_id"]:
            raise WeightsError(f"{path}: weights do not match their model id {manifest['model_id']} "
                               f"(they give {model_id.hex()}: file damaged or altered)")
        return model_id
    model_id = compute_model_id(config, model_state, z_freq, scales)
    if model_id.hex() != manifest["model_id"]:
        raise WeightsError(f"{path}: weights do not match their model id {manifest['model_id']} "
                           f"(they give {model_id.hex()}: file damaged or altered)")
    expected = LEGACY_GRAPH_DIGESTS.get(model_id.hex())
    if expected is None:
        raise WeightsError(f"{path}: a {LEGACY_WEIGHTS_FORMAT} file whose id does not cover its graphs, and not "
                           f"one this sicc knows (model {model_id.hex()}); export it again with "
                           f"`python -m sicc.train export`")
    if graphs.hex() != expected:
        raise WeightsError(f"{path}: its transform graphs are not those of model {model_id.hex()} "
                           "(file altered or damaged)")
    return model_id


def _read_members(handle, path: Path) -> dict[str, np.ndarray]:
    """Every member of the archive as an array, bounded before anything is inflated: the member
    count and the declared sizes (the zip directory) first; then each member, which the zip reader
    inflates to at most its declared size (and checks its CRC), is parsed as a ``.npy`` array whose
    header must agree with that size (no pickles, no object arrays)."""
    with zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise WeightsError(f"{path}: {len(infos)} archive members, over the {MAX_MEMBERS} a weights file may have")
        declared = sum(info.file_size for info in infos)
        if declared > MAX_WEIGHTS_BYTES:
            raise WeightsError(f"{path}: its members declare {declared} bytes uncompressed, over the "
                               f"{MAX_WEIGHTS_BYTES} a weights file may hold (a zip bomb?)")
        arrays: dict[str, np.ndarray] = {}
        for info in infos:
            name = info.filename[:-4] if info.filename.endswith(".npy") else None
            if name is None or name in arrays:
                raise WeightsError(f"{path}: unexpected archive member {info.filename!r}")
            arrays[name] = _npy_array(archive.read(info), path, info.filename)
    return arrays


def _npy_array(raw: bytes, path: Path, member: str) -> np.ndarray:
    from numpy.lib import format as npy

    stream = io.BytesIO(raw)
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(stream)
    else:
        raise WeightsError(f"{path}: member {member} has an unsupported .npy version {version}")
    if dtype.hasobject or dtype.str not in _ARRAY_DTYPES:
        raise WeightsError(f"{path}: member {member} has dtype {dtype.str}, not one a weights file holds")
    count = math.prod(shape)
    if count * dtype.itemsize != len(raw) - stream.tell():
        raise WeightsError(f"{path}: member {member} declares shape {shape} but holds "
                           f"{len(raw) - stream.tell()} bytes of data")
    flat = np.frombuffer(raw, dtype=dtype, count=count, offset=stream.tell())
    return flat.reshape(shape, order="F" if fortran else "C").copy()
