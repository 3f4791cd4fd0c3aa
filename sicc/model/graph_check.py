"""Checking a weights file's ONNX graphs before onnxruntime sees them: a graph is code.

onnxruntime runs whatever a graph says, so a weights file could make it allocate gigabytes (a
``ConstantOfShape`` of a forged shape, a broadcast of two long vectors, a chain of upsampling
convolutions) or run ops sicc never uses. Before a session is built, each graph is read here with a
small protobuf reader (the runtime has no ``onnx`` package) and checked against what the runtime
expects of it:

- the standard operator set only (no other domains, no functions, no subgraphs), and only the ops
  sicc's exporter writes (``ALLOWED_OPS``), with plain attributes;
- one input ``input`` and one output ``output``, float32, ``(1, C, height, width)`` with the
  channels of that transform (g_a: 3 -> latent, h_a: latent -> hyper, g_s: latent -> 3); the g_s of
  weights with inner level tables also has the inputs ``film_gain`` and ``film_shift``, float32
  ``(layers, hidden)`` (:mod:`sicc.model.level_film`), and no other graph has more inputs;
- every initializer external, naming a tensor of the file (``graph_keys``) with its shape;
- every tensor's shape, computed op by op at the largest tile the runtime feeds
  (``REFERENCE_SIDE``, with the small integer tensors that compute shapes evaluated on the way):
  each tensor at most ``MAX_TENSOR_BYTES``, all of them together at most ``MAX_GRAPH_BYTES``, and
  the output exactly the size the transform must give (g_a: 1/16, h_a: 1/4, g_s: 16x).

A graph that fails is refused with one line naming the graph and what is wrong
(:class:`~sicc.errors.WeightsError`, exit 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import WeightsError
from .config import ModelConfig

ALLOWED_OPS = frozenset({
    "Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Relu", "LeakyRelu", "Abs", "Neg",
    "Identity", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Cast",
    "ConstantOfShape", "Slice", "Transpose", "Pad", "DepthToSpace",
})
"""The ops sicc's exporter writes for its transforms (GDN, leaky ReLU, sub-pixel deconvolution)."""

REFERENCE_SIDE = {"g_a": 320, "h_a": 288, "g_s": 20}
"""The largest input side the runtime gives each transform (sicc.tiling): g_a a 16-latent tile with
a 2-latent halo (320 px), h_a 64 hyper positions with a 4-position halo (288 latents), g_s a
16-latent tile with a 2-latent halo."""
SCALE = {"g_a": (1, 16), "h_a": (1, 4), "g_s": (16, 1)}
"""Output side = input side * numerator / denominator."""
MAX_TENSOR_BYTES = 512 << 20
MAX_GRAPH_BYTES = 2 << 30
"""Bounds on one tensor and on all tensors of a graph at the reference size (the shipped g_s:
about 0.1 GB in all)."""
MAX_SHAPE_VALUES = 4096
"""Integer tensors evaluated while shapes are computed are at most this long."""

_FLOAT, _INT64, _INT32, _DOUBLE, _BOOL = 1, 7, 6, 11, 9
_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}
_ITEMSIZE = {1: 4, 6: 4, 7: 8, 9: 1, 11: 8}


class GraphProblem(Exception):
    """Why a graph is refused (turned into a WeightsError naming the file and the graph)."""


# -- a minimal protobuf reader -----------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise GraphProblem("malformed protobuf (varint)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varint and fixed, bytes otherwise."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos : pos + length]), pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise GraphProblem(f"malformed protobuf (wire type {wire})")
        if pos > len(buf):
            raise GraphProblem("malformed protobuf (cut short)")
        out.append((number, wire, value))
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _ints(fields, number: int) -> list[int]:
    """A repeated int64 field, packed or not."""
    values = []
    for num, wire, value in fields:
        if num != number:
            continue
        if wire == 2:
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                values.append(_signed(item))
        else:
            values.append(_signed(value))
    return values


def _one(fields, number: int, default=None):
    found = [value for num, _, value in fields if num == number]
    return found[-1] if found else default


def _all(fields, number: int) -> list:
    return [value for num, _, value in fields if num == number]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


# -- the model's structure -----------------------------------------------------------------------
@dataclass
class Tensor:
    shape: tuple[int, ...]
    dtype: int
    value: np.ndarray | None = None  # small integer (and scalar) tensors that compute shapes

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * _ITEMSIZE.get(self.dtype, 8)


def _tensor_proto(buf: bytes) -> tuple[str, Tensor, dict[str, str], bool]:
    """(name, tensor, external data entries, external?) of a TensorProto; small values decoded."""
    fields = _fields(buf)
    dims = tuple(_ints(fields, 1))
    dtype = _one(fields, 2, 0)
    if any(d < 0 for d in dims) or dtype not in _DTYPES:
        raise GraphProblem(f"a tensor of type {dtype} or shape {dims}")
    external = _one(fields, 14, 0) == 1
    entries = {}
    for entry in _all(fields, 13):
        parts = _fields(entry)
        entries[_text(_one(parts, 1, b""))] = _text(_one(parts, 2, b""))
    tensor = Tensor(dims, dtype)
    count = math.prod(dims)
    if not external and count <= MAX_SHAPE_VALUES:
        raw = _one(fields, 9)
        if raw is not None:
            if len(raw) != count * _ITEMSIZE[dtype]:
                raise GraphProblem(f"a constant of shape {dims} holds {len(raw)} bytes")
            tensor.value = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<")).reshape(dims).copy()
        elif dtype in (_INT64, _INT32, _BOOL):
            data = _ints(fields, 7 if dtype == _INT64 else 5)
            if len(data) == count:
                tensor.value = np.array(data, dtype=_DTYPES[dtype]).reshape(dims)
        elif dtype == _FLOAT:
            floats = [v for num, wire, v in fields if num == 4]
            packed = b"".join(v for v in floats if isinstance(v, bytes))
            data = np.frombuffer(packed, dtype="<f4") if packed else np.array(
                [np.frombuffer(v.to_bytes(4, "little"), "<f4")[0] for v in floats if isinstance(v, int)], np.float32)
            if data.size == count:
                tensor.value = data.reshape(dims).astype(np.float32)
    elif not external and count > MAX_SHAPE_VALUES and _one(fields, 9) is not None:
        if len(_one(fields, 9)) != count * _ITEMSIZE[dtype]:
            raise GraphProblem(f"a constant of shape {dims} does not hold its data")
    return _text(_one(fields, 8, b"")), tensor, entries, external


def _value_info(buf: bytes) -> tuple[str, int, list]:
    fields = _fields(buf)
    name = _text(_one(fields, 1, b""))
    kind = _fields(_one(fields, 2, b"") or b"")
    tensor_type = _one(kind, 1)
    if tensor_type is None:
        raise GraphProblem(f"{name!r} is not a tensor")
    tt = _fields(tensor_type)
    dims = []
    for dim in _all(_fields(_one(tt, 2, b"") or b""), 1):
        d = _fields(dim)
        dims.append(_signed(_one(d, 1)) if _one(d, 1) is not None else _text(_one(d, 2, b"")) or None)
    return name, _one(tt, 1, 0), dims


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict


def _attribute(buf: bytes) -> tuple[str, object]:
    fields = _fields(buf)
    name = _text(_one(fields, 1, b""))
    kind = _one(fields, 20, 0)
    if kind == 1:  # FLOAT
        return name, float(np.frombuffer(int(_one(fields, 2, 0)).to_bytes(4, "little"), "<f4")[0])
    if kind == 2:  # INT
        return name, _signed(_one(fields, 3, 0))
    if kind == 3:  # STRING
        return name, _text(_one(fields, 4, b""))
    if kind == 4:  # TENSOR
        return name, _tensor_proto(_one(fields, 5, b""))[1]
    if kind == 7:  # INTS
        return name, _ints(fields, 8)
    raise GraphProblem(f"attribute {name!r} of type {kind} (graphs, sparse tensors and lists of them are not used)")


def _parse_model(data: bytes):
    model = _fields(data)
    if _all(model, 25):
        raise GraphProblem("it defines functions")
    for opset in _all(model, 8):
        domain = _text(_one(_fields(opset), 1, b""))
        if domain not in ("", "ai.onnx"):
            raise GraphProblem(f"it imports the operator set {domain!r}")
    graph = _one(model, 7)
    if graph is None:
        raise GraphProblem("it holds no graph")
    return _fields(graph)


# -- shapes, op by op --------------------------------------------------------------------------
def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise GraphProblem(f"shapes {shapes} do not broadcast") from None


def _needs_value(tensor: Tensor, what: str) -> np.ndarray:
    if tensor.value is None:
        raise GraphProblem(f"{what} is not a constant the checker can evaluate")
    return tensor.value


def _small(value: np.ndarray | None) -> np.ndarray | None:
    return value if value is not None and value.size <= MAX_SHAPE_VALUES else None


def _conv_out(side: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (side + pad - dilation * (kernel - 1) - 1) // stride + 1


def _run(node: Node, args: list[Tensor | None]) -> list[Tensor]:
    op, a = node.op, node.attrs
    x = args[0] if args else None
    if op == "Constant":
        if set(a) != {"value"} or not isinstance(a["value"], Tensor):
            raise GraphProblem("a Constant without a plain tensor value")
        return [a["value"]]
    if op in ("Identity", "Sqrt", "Relu", "LeakyRelu", "Abs", "Neg"):
        value = x.value if op in ("Identity", "Neg", "Abs") else None
        if value is not None and op == "Neg":
            value = -value
        elif value is not None and op == "Abs":
            value = np.abs(value)
        return [Tensor(x.shape, x.dtype, value)]
    if op in ("Add", "Sub", "Mul", "Div", "Pow"):
        y = args[1]
        shape = _broadcast(x.shape, y.shape)
        value = None
        if x.value is not None and y.value is not None and x.dtype in (_INT64, _INT32) and op != "Pow":
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
                  "Div": lambda p, q: np.trunc(p / np.where(q == 0, 1, q)).astype(p.dtype)}[op]
            value = _small(fn(x.value, y.value))
        return [Tensor(shape, x.dtype, value)]
    if op == "Cast":
        to = a.get("to")
        if to not in _DTYPES:
            raise GraphProblem(f"a Cast to type {to}")
        return [Tensor(x.shape, to, None if x.value is None else x.value.astype(_DTYPES[to]))]
    if op == "Shape":
        dims = np.array(x.shape, dtype=np.int64)
        start, end = a.get("start", 0), a.get("end", len(dims))
        dims = dims[start:end]
        return [Tensor(dims.shape, _INT64, dims)]
    if op == "Gather":
        indices = _needs_value(args[1], "a Gather index")
        axis = a.get("axis", 0) % max(1, len(x.shape))
        if len(x.shape) == 0 or np.any(indices >= x.shape[axis]) or np.any(indices < -x.shape[axis]):
            raise GraphProblem("a Gather index out of range")
        shape = x.shape[:axis] + indices.shape + x.shape[axis + 1 :]
        value = None if x.value is None else _small(np.take(x.value, indices, axis=axis))
        return [Tensor(shape, x.dtype, value)]
    if op in ("Unsqueeze", "Squeeze"):
        axes = [int(v) for v in _needs_value(args[1], f"{op} axes").reshape(-1)] if len(args) > 1 and args[1] \
            else list(a.get("axes", []))
        if op == "Unsqueeze":
            rank = len(x.shape) + len(axes)
            shape = list(x.shape)
            for axis in sorted(v % rank for v in axes):
                shape.insert(axis, 1)
        else:
            drop = {v % len(x.shape) for v in axes} if axes else {i for i, d in enumerate(x.shape) if d == 1}
            if any(x.shape[i] != 1 for i in drop):
                raise GraphProblem("a Squeeze of an axis that is not 1")
            shape = [d for i, d in enumerate(x.shape) if i not in drop]
        value = None if x.value is None else x.value.reshape(shape)
        return [Tensor(tuple(shape), x.dtype, value)]
    if op == "Concat":
        axis = a.get("axis", 0) % max(1, len(x.shape))
        rest = [t.shape[:axis] + t.shape[axis + 1 :] for t in args]
        if any(r != rest[0] for r in rest) or any(len(t.shape) != len(x.shape) for t in args):
            raise GraphProblem("a Concat of shapes that do not fit")
        shape = x.shape[:axis] + (sum(t.shape[axis] for t in args),) + x.shape[axis + 1 :]
        value = None
        if all(t.value is not None for t in args):
            value = _small(np.concatenate([t.value for t in args], axis=axis))
        return [Tensor(shape, x.dtype, value)]
    if op == "Reshape":
        target = [int(v) for v in _needs_value(args[1], "a Reshape shape").reshape(-1)]
        shape = [x.shape[i] if v == 0 and not a.get("allowzero", 0) else v for i, v in enumerate(target)]
        if shape.count(-1) > 1 or any(v < -1 for v in shape):
            raise GraphProblem(f"a Reshape to {target}")
        if -1 in shape:
            known = math.prod(v for v in shape if v != -1)
            if known == 0 or math.prod(x.shape) % known:
                raise GraphProblem(f"a Reshape of {x.shape} to {target}")
            shape[shape.index(-1)] = math.prod(x.shape) // known
        if math.prod(shape) != math.prod(x.shape):
            raise GraphProblem(f"a Reshape of {x.shape} to {target}")
        value = None if x.value is None else x.value.reshape(shape)
        return [Tensor(tuple(shape), x.dtype, value)]
    if op == "ConstantOfShape":
        shape = tuple(int(v) for v in _needs_value(x, "a ConstantOfShape shape").reshape(-1))
        if any(v < 0 for v in shape):
            raise GraphProblem(f"a ConstantOfShape of shape {shape}")
        fill = a.get("value")
        dtype = fill.dtype if isinstance(fill, Tensor) else _FLOAT
        value = None
        if math.prod(shape) <= MAX_SHAPE_VALUES:
            base = fill.value.reshape(-1)[0] if isinstance(fill, Tensor) and fill.value is not None else 0
            value = np.full(shape, base, dtype=_DTYPES[dtype])
        return [Tensor(shape, dtype, value)]
    if op == "Slice":
        starts = _needs_value(args[1], "Slice starts").reshape(-1)
        ends = _needs_value(args[2], "Slice ends").reshape(-1)
        axes = _needs_value(args[3], "Slice axes").reshape(-1) if len(args) > 3 and args[3] else range(len(starts))
        steps = _needs_value(args[4], "Slice steps").reshape(-1) if len(args) > 4 and args[4] else [1] * len(starts)
        index = [slice(None)] * len(x.shape)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            if step == 0:
                raise GraphProblem("a Slice with step 0")
            index[int(axis) % len(x.shape)] = slice(int(np.clip(start, -2**62, 2**62)), int(np.clip(end, -2**62, 2**62)), int(step))
        shape = tuple(len(range(*s.indices(d))) for s, d in zip(index, x.shape))
        value = None if x.value is None else x.value[tuple(index)]
        return [Tensor(shape, x.dtype, value)]
    if op == "Transpose":
        perm = a.get("perm") or list(reversed(range(len(x.shape))))
        if sorted(perm) != list(range(len(x.shape))):
            raise GraphProblem(f"a Transpose with perm {perm}")
        value = None if x.value is None else np.transpose(x.value, perm)
        return [Tensor(tuple(x.shape[p] for p in perm), x.dtype, value)]
    if op == "Pad":
        if a.get("mode", "constant") not in ("constant", "reflect", "edge"):
            raise GraphProblem(f"a Pad of mode {a.get('mode')}")
        pads = [int(v) for v in _needs_value(args[1], "Pad pads").reshape(-1)]
        axes = list(range(len(x.shape)))
        if len(args) > 3 and args[3] is not None:
            axes = [int(v) % len(x.shape) for v in _needs_value(args[3], "Pad axes").reshape(-1)]
        if len(pads) != 2 * len(axes):
            raise GraphProblem("a Pad with the wrong number of pads")
        shape = list(x.shape)
        for k, axis in enumerate(axes):
            shape[axis] += pads[k] + pads[k + len(axes)]
        if any(v < 0 for v in shape):
            raise GraphProblem("a Pad to a negative size")
        return [Tensor(tuple(shape), x.dtype)]
    if op == "DepthToSpace":
        block = a.get("blocksize", 0)
        if len(x.shape) != 4 or block < 1 or x.shape[1] % (block * block):
            raise GraphProblem("a DepthToSpace that does not fit its input")
        n, c, h, w = x.shape
        return [Tensor((n, c // (block * block), h * block, w * block), x.dtype)]
    if op in ("Conv", "ConvTranspose"):
        weight = args[1]
        if len(x.shape) != 4 or len(weight.shape) != 4 or a.get("auto_pad", "NOTSET") != "NOTSET":
            raise GraphProblem(f"a {op} that is not a plain 2-d convolution")
        group = a.get("group", 1)
        kernel = list(a.get("kernel_shape") or weight.shape[2:])
        strides, dilations = list(a.get("strides") or [1, 1]), list(a.get("dilations") or [1, 1])
        pads = list(a.get("pads") or [0, 0, 0, 0])
        if kernel != list(weight.shape[2:]) or len(strides) != 2 or len(dilations) != 2 or len(pads) != 4 \
                or group < 1 or min(strides + dilations) < 1 or min(pads) < 0:
            raise GraphProblem(f"a {op} with attributes {a}")
        if op == "Conv":
            if weight.shape[1] * group != x.shape[1] or weight.shape[0] % group:
                raise GraphProblem(f"a Conv of {x.shape[1]} channels with weights {weight.shape}")
            out = [_conv_out(x.shape[2 + i], kernel[i], strides[i], pads[i] + pads[i + 2], dilations[i]) for i in (0, 1)]
            channels = weight.shape[0]
        else:
            if weight.shape[0] != x.shape[1]:
                raise GraphProblem(f"a ConvTranspose of {x.shape[1]} channels with weights {weight.shape}")
            extra = list(a.get("output_padding") or [0, 0])
            out = [strides[i] * (x.shape[2 + i] - 1) + extra[i] + dilations[i] * (kernel[i] - 1) + 1
                   - pads[i] - pads[i + 2] for i in (0, 1)]
            channels = weight.shape[1] * group
        if len(args) > 2 and args[2] is not None and args[2].shape != (channels,):
            raise GraphProblem(f"a {op} bias of shape {args[2].shape} for {channels} channels")
        if min(out) < 1:
            raise GraphProblem(f"a {op} with an empty output")
        return [Tensor((x.shape[0], channels, *out), x.dtype)]
    raise GraphProblem(f"op {op}")  # unreachable: ALLOWED_OPS is checked first


def check_graph(name: str, data: bytes, config: ModelConfig, keys: list[str],
                shapes: Mapping[str, tuple[int, ...]], extra: Mapping[str, tuple[int, ...]] | None = None) -> None:
    """Raise GraphProblem when graph ``name`` is not what the runtime can run safely (module doc);
    ``extra``: the graph's inputs besides ``input`` and their exact shapes (float32)."""
    extra = dict(extra or {})
    channels_in = {"g_a": 3, "h_a": config.latent, "g_s": config.latent}[name]
    channels_out = {"g_a": config.latent, "h_a": config.hyper, "g_s": 3}[name]
    graph = _parse_model(data)
    inputs = [_value_info(v) for v in _all(graph, 11)]
    outputs = [_value_info(v) for v in _all(graph, 12)]
    if _all(graph, 15):
        raise GraphProblem("it holds sparse initializers")
    tensors: dict[str, Tensor] = {}
    for buf in _all(graph, 5):
        init_name, tensor, entries, external = _tensor_proto(buf)
        if not external or entries.get("location") not in keys:
            raise GraphProblem(f"initializer {init_name!r} is not one of the file's tensors")
        if tuple(shapes[entries["location"]]) != tensor.shape or tensor.dtype != _FLOAT:
            raise GraphProblem(f"initializer {init_name!r} has shape {tensor.shape}, its tensor "
                               f"{tuple(shapes[entries['location']])}")
        tensors[init_name] = tensor
    side = REFERENCE_SIDE[name]
    names = [n for n, _, _ in inputs if n not in tensors]
    if sorted(names) != sorted(["input", *extra]) or len(set(names)) != len(names) \
            or [n for n, _, _ in outputs] != ["output"]:
        expected = ", ".join(repr(n) for n in ["input", *extra])
        raise GraphProblem(f"inputs {names} and outputs {[n for n, _, _ in outputs]} where {expected} and "
                           "'output' are expected")
    for n, elem, dims in inputs:
        if n in extra and (elem != _FLOAT or tuple(dims) != tuple(extra[n])):
            raise GraphProblem(f"its input {n} is {dims} of type {elem}, where float {tuple(extra[n])} is expected")
        if n in extra:
            tensors[n] = Tensor(tuple(extra[n]), _FLOAT)
    for what, (_, elem, dims), channels in (("input", inputs[[n for n, _, _ in inputs].index("input")], channels_in),
                                           ("output", outputs[0], channels_out)):
        if elem != _FLOAT or len(dims) != 4 or dims[0] not in (1, None, "") or dims[1] != channels \
                or any(isinstance(d, int) for d in dims[2:]):
            raise GraphProblem(f"its {what} is {dims} of type {elem}, where float (1, {channels}, height, width) "
                               "is expected")
    tensors["input"] = Tensor((1, channels_in, side, side), _FLOAT)
    total = 0
    for buf in _all(graph, 1):
        fields = _fields(buf)
        node = Node(_text(_one(fields, 4, b"")), [_text(v) for v in _all(fields, 1)],
                    [_text(v) for v in _all(fields, 2)], dict(_attribute(v) for v in _all(fields, 5)))
        if _text(_one(fields, 7, b"")) not in ("", "ai.onnx"):
            raise GraphProblem(f"op {node.op} from another domain")
        if node.op not in ALLOWED_OPS:
            raise GraphProblem(f"op {node.op}, which sicc's transforms do not use")
        missing = [i for i in node.inputs if i and i not in tensors]
        if missing:
            raise GraphProblem(f"a {node.op} reads {missing[0]!r} before it is computed")
        results = _run(node, [tensors[i] if i else None for i in node.inputs])
        if len(node.outputs) != len(results):
            raise GraphProblem(f"a {node.op} with {len(node.outputs)} outputs")
        for out, tensor in zip(node.outputs, results):
            if tensor.nbytes > MAX_TENSOR_BYTES:
                raise GraphProblem(f"a {node.op} makes a tensor of shape {tensor.shape} "
                                   f"({tensor.nbytes} bytes) from a {side}-pixel tile, over {MAX_TENSOR_BYTES}")
            total += tensor.nbytes
            tensors[out] = tensor
    if total > MAX_GRAPH_BYTES:
        raise GraphProblem(f"its tensors take {total} bytes on a {side}-pixel tile, over {MAX_GRAPH_BYTES}")
    if "output" not in tensors:
        raise GraphProblem("it never computes its output")
    numerator, denominator = SCALE[name]
    expected = (1, channels_out, side * numerator // denominator, side * numerator // denominator)
    if tensors["output"].shape != expected or tensors["output"].dtype != _FLOAT:
        raise GraphProblem(f"it gives {tensors['output'].shape} for a {side}x{side} input, where {expected} "
                           "is expected")


def check_graphs(path: Path, config: ModelConfig, graphs: Mapping[str, bytes], graph_keys: Mapping[str, list[str]],
                 shapes: Mapping[str, tuple[int, ...]],
                 inputs: Mapping[str, Mapping[str, tuple[int, ...]]] | None = None) -> None:
    """Check every transform graph of a weights file; WeightsError names the first that fails.
    ``inputs``: by graph, its inputs besides ``input`` and their shapes (g_s with inner level tables)."""
    for name, data in graphs.items():
        try:
            check_graph(name, data, config, list(graph_keys[name]), shapes, (inputs or {}).get(name))
        except GraphProblem as exc:
            raise WeightsError(f"{path}: its {name} graph is refused: {exc}") from None
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError, MemoryError) as exc:
            raise WeightsError(f"{path}: its {name} graph is refused: it does not parse "
                               f"({type(exc).__name__}: {exc})") from None
