"""Weights files from trained networks (torch side): ONNX graphs, integer tables, model id.

``export_weights`` turns a ``SICTrainable`` into the runtime's weights file
(:mod:`sicc.model.weights`): the transforms g_a, h_a, g_s exported to ONNX with
their initializers made *external* (each names its state-dict key, so the
weights are stored once), the z prior turned into integer frequencies, the
scale table, and the model id. ``load_trainable`` goes the other way, to
continue training from a weights file.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model.config import ModelConfig
from ..model.level_film import GAIN_INPUT, SHIFT_INPUT
from ..model.probability import Z_BOUND, frequencies_from_pmf, scale_table
from ..model.weights import GRAPHS, ModelWeights, compute_model_id, graph_digest, load_weights, write_weights
from .network import SICModel, has_inner_film, has_level_film

ONNX_OPSET = 17
EXPORT_CHECK_TOLERANCE = 1e-3
"""Largest difference allowed between torch and onnxruntime on the export check input."""


def z_frequencies(z_prior) -> np.ndarray:
    """Integer frequencies of z in [-Z_BOUND, Z_BOUND] per channel, from the trained prior."""
    values = torch.arange(-Z_BOUND, Z_BOUND + 1, dtype=torch.float32)
    channels = z_prior.quantiles.shape[0]
    with torch.no_grad():
        likelihood = z_prior.likelihood(values.view(1, 1, -1).repeat(channels, 1, 1))
    return frequencies_from_pmf(likelihood.view(channels, -1).double().numpy())


class SubPixelDeconv(torch.nn.Module):
    """A 5x5, stride-2 transposed convolution computed as one 3x3 convolution giving the four
    output phases, then a pixel shuffle: the same function, but onnxruntime runs it about twice
    as fast and without the col2im buffer (25x the input) that dominated decode memory.

    Output phase (py, px) at (Y, X) reads inputs Y-1..Y+1 with kernel taps 4+py, 2+py, py
    (tap 5 is zero). The taps are gathered from the deconvolution's own parameter inside the
    graph, so the weights file keeps the trained parameter, stored once; onnxruntime folds the
    gather at load time.
    """

    def __init__(self, deconv: torch.nn.ConvTranspose2d):
        super().__init__()
        if (deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding) != ((5, 5), (2, 2), (2, 2), (1, 1)):
            raise ValueError("SubPixelDeconv needs a 5x5 stride-2 deconvolution (padding 2, output padding 1)")
        self.deconv = deconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.deconv.weight, self.deconv.bias
        cin, cout = weight.shape[:2]
        padded = torch.nn.functional.pad(weight, (0, 1, 0, 1))
        phases = []
        for py in (0, 1):
            for px in (0, 1):
                taps = padded[:, :, [4 + py, 2 + py, py]][:, :, :, [4 + px, 2 + px, px]]
                phases.append(taps.transpose(0, 1))
        kernel = torch.stack(phases, 1).reshape(cout * 4, cin, 3, 3)
        out = torch.nn.functional.pixel_shuffle(torch.nn.functional.conv2d(x, kernel, None, padding=1), 2)
        return out + bias.view(1, -1, 1, 1)


class InnerFilmSynthesis(torch.nn.Sequential):
    """g_s whose hidden layers are told the level (:mod:`sicc.model.level_film`'s inner tables): the
    same layers, and after the ``j``-th of ``inner_at`` (its inverse GDNs) the activations times row
    ``j`` of ``film_gain`` plus row ``j`` of ``film_shift``, per channel. The rows are graph inputs,
    so one graph serves every level (the runtime feeds the level's rows)."""

    def __init__(self, layers, inner_at: tuple[int, ...]):
        super().__init__(*layers)
        self.inner_at = tuple(inner_at)

    def forward(self, x: torch.Tensor, film_gain: torch.Tensor, film_shift: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self):
            x = layer(x)
            if index in self.inner_at:
                row = self.inner_at.index(index)
                x = x * film_gain[row].view(1, -1, 1, 1) + film_shift[row].view(1, -1, 1, 1)
        return x


def for_export(module: torch.nn.Module, inner_at: tuple[int, ...] = ()) -> torch.nn.Module:
    """``module`` (a Sequential) with its 5x5 stride-2 deconvolutions as SubPixelDeconv; with
    ``inner_at``, an :class:`InnerFilmSynthesis` of those layers."""
    if not isinstance(module, torch.nn.Sequential):
        return module
    layers = []
    for layer in module:
        convertible = isinstance(layer, torch.nn.ConvTranspose2d) and layer.kernel_size == (5, 5) \
            and layer.stride == (2, 2) and layer.padding == (2, 2) and layer.output_padding == (1, 1)
        layers.append(SubPixelDeconv(layer) if convertible else layer)
    return InnerFilmSynthesis(layers, inner_at) if inner_at else torch.nn.Sequential(*layers)


def export_graph(module: torch.nn.Module, prefix: str, in_channels: int,
                 state: dict[str, np.ndarray], inner_at: tuple[int, ...] = (),
                 hidden: int = 0) -> tuple[bytes, list[str]]:
    """``module`` as an ONNX graph (dynamic height and width) whose initializers are external,
    located at their state-dict keys ``prefix.<name>``; returns the graph and those keys. With
    ``inner_at`` (g_s of a network with inner level tables), the graph also takes the inputs
    ``film_gain`` and ``film_shift``, (len(inner_at), hidden) float32."""
    import onnx
    from onnx.external_data_helper import set_external_data

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter works offline with torch alone; no constant folding, so every
        # initializer is a parameter under its own name (GDN's squares are computed in the graph).
        args = (torch.zeros(1, in_channels, 16, 16),)
        names = ["input"]
        if inner_at:
            args += (torch.ones(len(inner_at), hidden), torch.zeros(len(inner_at), hidden))
            names += [GAIN_INPUT, SHIFT_INPUT]
        torch.onnx.export(for_export(module, inner_at).eval(), args, buffer, dynamo=False,
                          input_names=names, output_names=["output"], opset_version=ONNX_OPSET,
                          dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}},
                          do_constant_folding=False)
    graph = onnx.load_from_string(buffer.getvalue())
    keys = []
    for init in graph.graph.initializer:
        key = f"{prefix}.{init.name.replace('.deconv.', '.')}"
        if key not in state or not np.array_equal(onnx.numpy_helper.to_array(init), state[key]):
            raise ValueError(f"ONNX export of {prefix}: initializer {init.name} is not the parameter {key}")
        set_external_data(init, location=key, offset=0, length=state[key].nbytes)
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        keys.append(key)
    return graph.SerializeToString(), keys


def _check_graphs(model: SICModel, weights: ModelWeights) -> None:
    """Each exported graph, run by onnxruntime, computes what the torch module computes."""
    from ..model.transforms import Transforms

    transforms = Transforms(weights)
    gen = torch.Generator().manual_seed(0)
    cfg = model.config
    inputs = {"g_a": torch.rand(1, 3, 64, 96, generator=gen),
              "h_a": torch.randn(1, cfg.latent, 8, 12, generator=gen) * 4,
              "g_s": torch.round(torch.randn(1, cfg.latent, 4, 6, generator=gen) * 4)}
    for name, x in inputs.items():
        feeds, inner = {}, model.level_film is not None and model.level_film.inner_scale is not None
        with torch.no_grad():
            if name == "g_s" and inner:  # the rows of one level (gain 1 + scale, as the runtime feeds them)
                level = cfg.levels // 2
                gain = 1 + model.level_film.inner_scale[level - 1] + 0.25 * torch.randn(
                    model.level_film.inner_scale.shape[1:], generator=gen)
                shift = model.level_film.inner_shift[level - 1] + 0.25 * torch.randn(
                    model.level_film.inner_shift.shape[1:], generator=gen)
                expected = InnerFilmSynthesis(model.g_s, model.INNER_LAYERS)(x, gain, shift).numpy()
                feeds = {GAIN_INPUT: gain.numpy(), SHIFT_INPUT: shift.numpy()}
            else:
                expected = getattr(model, name)(x).numpy()
        got = transforms.run(name, x.numpy(), feeds)
        if got.shape != expected.shape or np.abs(got - expected).max() > EXPORT_CHECK_TOLERANCE:
            raise ValueError(f"ONNX export of {name} does not reproduce the torch module")


def build_weights(model: SICModel, z_freq: np.ndarray, training: dict,
                  z_prior_state: dict[str, np.ndarray] | None = None,
                  scales: np.ndarray | None = None) -> ModelWeights:
    """The weights file contents of a float model and its z frequency table, checked.

    ``scales`` keeps an existing file's scale table (it is part of the model id; np.exp
    may round its last bit differently on another machine); by default it is computed."""
    config = model.config
    state = {k: v.detach().cpu().float().numpy().copy() for k, v in model.state_dict().items()}
    computed, offset = scale_table(config)
    scales = computed if scales is None else np.asarray(scales, dtype=np.float64)
    in_channels = {"g_a": 3, "h_a": config.latent, "g_s": config.latent}
    graphs, graph_keys = {}, {}
    inner = model.level_film is not None and model.level_film.inner_scale is not None
    for name in GRAPHS:
        inner_at = model.INNER_LAYERS if name == "g_s" and inner else ()
        graphs[name], graph_keys[name] = export_graph(getattr(model, name), name, in_channels[name], state,
                                                      inner_at, config.hidden)
    weights = ModelWeights(
        config=config, model_state=state, z_frequencies=np.asarray(z_freq, dtype=np.int64), scale_table=scales,
        scale_offset=offset, model_id=compute_model_id(config, state, z_freq, scales,
                                                       graph_digest(graphs, graph_keys, offset)), graphs=graphs,
        graph_keys=graph_keys, training=training, z_prior_state=z_prior_state or {})
    _check_graphs(model, weights)
    return weights


def export_weights(net, path: Path, training: dict) -> str:
    """Write a weights file from a ``SICTrainable``; returns the model id in hex."""
    z_prior_state = {k: v.detach().cpu().float().numpy().copy() for k, v in net.z_prior.state_dict().items()}
    weights = build_weights(net.model, z_frequencies(net.z_prior), training, z_prior_state)
    write_weights(Path(path), weights)
    return weights.model_id.hex()


def build_model(weights: ModelWeights) -> SICModel:
    """The float torch network of a weights file, in eval mode."""
    model = SICModel(weights.config, level_film=has_level_film(weights.model_state),
                     inner_film=has_inner_film(weights.model_state))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.model_state.items()})
    return model.eval()


def load_trainable(path: Path):
    """A ``SICTrainable`` initialised from a weights file, to continue training."""
    from .objective import SICTrainable

    weights = load_weights(path)
    net = SICTrainable(weights.config, level_film=has_level_film(weights.model_state),
                       inner_film=has_inner_film(weights.model_state))
    net.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.model_state.items()})
    net.z_prior.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.z_prior_state.items()})
    return net


LEGACY_FORMAT = "sicc-weights-1"


def convert_legacy(path: Path, out: Path) -> str:
    """Rewrite a ``sicc-weights-1`` file (torch.save of plain tensors, read with
    ``weights_only=True``) in the current format, keeping its tables. Its model id changes: the
    current format's id covers the transform graphs as well (``sicc.model.weights``)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != LEGACY_FORMAT:
        raise ValueError(f"{path}: not a {LEGACY_FORMAT} file")
    config = ModelConfig.from_dict(payload["config"])
    model = SICModel(config)
    model.load_state_dict(payload["model"])
    z_prior_state = {k: v.float().numpy().copy() for k, v in payload.get("z_prior", {}).items()}
    weights = build_weights(model.eval(), payload["z_frequencies"].numpy(), json.loads(payload.get("training", "{}")),
                            z_prior_state, scales=payload["scale_table"].numpy())
    if weights.scale_offset != int(payload["scale_offset"]):
        raise ValueError(f"{path}: scale offset {payload['scale_offset']} is not this sicc's")
    if compute_model_id(config, weights.model_state, weights.z_frequencies, weights.scale_table).hex() \
            != payload["model_id"]:
        raise ValueError(f"{path}: its tensors and tables do not give its model id {payload['model_id']}")
    write_weights(Path(out), weights)
    return weights.model_id.hex()
