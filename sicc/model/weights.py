"""The weights file: what the runtime needs, readable with numpy alone, never code.

A weights file is a ``.npz`` archive read with ``allow_pickle=False`` (a
zip of ``.npy`` arrays, each member CRC-checked by the zip layer):

- ``manifest``: UTF-8 JSON (format, config, model id, scale offset, training
  summary, and for each transform graph the state keys it reads);
- ``model/<key>``: the float32 network weights (one copy, by state-dict key);
- ``z_prior/<key>``: the float state of the factorized prior of z (training only);
- ``z_frequencies``: int64 integer frequencies of z, ``scale_table``: float64 scales;
- ``graph/<name>`` for ``g_a``, ``h_a``, ``g_s``: ONNX graphs whose
  initializers are *external*, each naming its ``model/<key>``; the runtime
  hands onnxruntime those arrays, so the weights are stored once and the model
  id, a SHA-256 over the config, every float tensor, the z table and the scale
  table, covers exactly what the transforms compute with.

The model id is recomputed on load, never trusted, so a ``.sic`` file (which
stores it) is never decoded with another model.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import WeightsError
from .config import ModelConfig

WEIGHTS_FORMAT = "sicc-weights-2"
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
                     z_freq: np.ndarray, scales: np.ndarray) -> bytes:
    """First 8 bytes of SHA-256 over the config and every tensor (float32, key order), the z table
    (int64) and the scale table (float64), all little-endian."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    for key in sorted(model_state):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(model_state[key], dtype="<f4").tobytes())
    digest.update(np.ascontiguousarray(z_freq, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(scales, dtype="<f8").tobytes())
    return digest.digest()[:8]


def write_weights(path: Path, weights: ModelWeights) -> None:
    """Write ``weights`` atomically (a temporary file beside ``path``, then rename)."""
    manifest = {
        "format": WEIGHTS_FORMAT,
        "config": weights.config.to_dict(),
        "model_id": weights.model_id.hex(),
        "scale_offset": int(weights.scale_offset),
        "training": weights.training,
        "graphs": {name: {"state_keys": list(weights.graph_keys.get(name, []))} for name in weights.graphs},
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
    with np.load(handle, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    manifest = json.loads(bytes(arrays.pop("manifest")).decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not a sicc weights file (format {manifest.get('format')!r} "
                           f"where {WEIGHTS_FORMAT!r} is expected)")
    config = ModelConfig.from_dict(manifest["config"])
    model_state = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    if any(v.dtype != np.float32 for v in model_state.values()):
        raise WeightsError(f"{path}: network weights must be float32")
    z_freq = arrays["z_frequencies"].astype(np.int64)
    scales = arrays["scale_table"].astype(np.float64)
    model_id = compute_model_id(config, model_state, z_freq, scales)
    if model_id.hex() != manifest["model_id"]:
        raise WeightsError(f"{path}: weights do not match their model id (file damaged?)")
    graphs = {name: arrays[f"graph/{name}"].tobytes() for name in GRAPHS}
    graph_keys = {name: [str(k) for k in manifest["graphs"][name]["state_keys"]] for name in GRAPHS}
    missing = sorted({k for keys in graph_keys.values() for k in keys} - set(model_state))
    if missing:
        raise WeightsError(f"{path}: the transform graphs read weights the file lacks ({missing[0]})")
    return ModelWeights(
        config=config,
        model_state=model_state,
        z_frequencies=z_freq,
        scale_table=scales,
        scale_offset=int(manifest["scale_offset"]),
        model_id=model_id,
        graphs=graphs,
        graph_keys=graph_keys,
        training=dict(manifest.get("training") or {}),
        z_prior_state={k[len("z_prior/"):]: v for k, v in arrays.items() if k.startswith("z_prior/")},
    )
