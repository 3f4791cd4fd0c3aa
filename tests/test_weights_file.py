"""A weights file is code in disguise (issue 47): every byte that affects decoding is covered by the
model id or refused, archive members are bounded before they are inflated, the config is checked,
and the ONNX graphs are checked against what the runtime expects before onnxruntime runs them.
Refusals are exit 4 and one line."""

from __future__ import annotations

import io
import json
import os
import resource
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import sicc
from sicc.errors import WeightsError
from sicc.model import graph_check
from sicc.model.weights import LEGACY_GRAPH_DIGESTS, default_weights_path, load_weights
from tests.conftest import TINY_GOLDEN_WEIGHTS
from tests.clitools import assert_error, cli_inprocess, one_torch_thread, sicc_command  # noqa: F401

onnx = pytest.importorskip("onnx")
REPO = Path(__file__).resolve().parents[1]


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def manifest_of(files: dict[str, bytes]) -> dict:
    return json.loads(bytes(np.load(io.BytesIO(files["manifest.npy"]))).decode())


def graph_of(files: dict[str, bytes], name: str):
    return onnx.load_from_string(np.load(io.BytesIO(files[f"graph/{name}.npy"])).tobytes())


def rewrite(src: Path, dst: Path, graphs: dict | None = None, manifest=None) -> Path:
    """``src`` with graphs replaced (onnx models) and the manifest edited by ``manifest(m)``."""
    files = members(src)
    for name, model in (graphs or {}).items():
        files[f"graph/{name}.npy"] = npy_bytes(np.frombuffer(model.SerializeToString(), dtype=np.uint8))
    if manifest is not None:
        m = manifest_of(files)
        manifest(m)
        files["manifest.npy"] = npy_bytes(np.frombuffer(json.dumps(m, sort_keys=True).encode(), dtype=np.uint8))
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return dst


def consistent(path: Path) -> Path:
    """Make ``path`` (sicc-weights-3) self-consistent again after its graphs were changed: the
    manifest's graph digests and the model id recomputed, as a forger would."""
    import hashlib

    from sicc.model.weights import GRAPHS, _read_members, compute_model_id, graph_digest
    from sicc.model.config import ModelConfig

    with open(path, "rb") as handle:
        arrays = _read_members(handle, path)
    m = json.loads(bytes(arrays["manifest"]).decode())
    graphs = {n: arrays[f"graph/{n}"].tobytes() for n in GRAPHS}
    keys = {n: m["graphs"][n]["state_keys"] for n in GRAPHS}
    state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    new_id = compute_model_id(ModelConfig.from_dict(m["config"]), state, arrays["z_frequencies"],
                              arrays["scale_table"], graph_digest(graphs, keys, m["scale_offset"])).hex()

    def edit(manifest):
        manifest["model_id"] = new_id
        for n in GRAPHS:
            manifest["graphs"][n]["sha256"] = hashlib.sha256(graphs[n]).hexdigest()

    return rewrite(path, path, manifest=edit)


def negated_g_s(files: dict[str, bytes]):
    """g_s with its output negated (a photo negative): ops the runtime allows, shapes it expects."""
    model = graph_of(files, "g_s")
    for node in model.graph.node:
        node.output[:] = ["pre_output" if o == "output" else o for o in node.output]
    model.graph.node.append(onnx.helper.make_node("Neg", ["pre_output"], ["output"]))
    return model


# -- the model id covers the graphs -------------------------------------------------------------
def test_tampered_g_s_of_a_legacy_file_is_refused(tmp_path):
    """The probe's attack: a sicc-weights-2 file (whose id leaves the graphs out; the golden files' tiny
    model, and the shipped model until 991dde0) with a negated g_s used to decode a photo negative under
    the same id; now refused by the digest recorded for that id."""
    files = members(TINY_GOLDEN_WEIGHTS)
    assert manifest_of(files)["format"] == "sicc-weights-2"
    tampered = rewrite(TINY_GOLDEN_WEIGHTS, tmp_path / "neg.npz", {"g_s": negated_g_s(files)})
    with pytest.raises(WeightsError, match="graphs are not those of model bc7e96de13fd5094"):
        load_weights(tampered)


def test_tampered_g_s_of_the_shipped_file_is_refused(tmp_path):
    """The same attack on the shipped file: the decode exits 4 with load_weights' one line (which check
    catches it depends on the file's format) and writes nothing."""
    tampered = rewrite(default_weights_path(), tmp_path / "neg.npz", {"g_s": negated_g_s(members(default_weights_path()))})
    with pytest.raises(WeightsError, match="graph") as refused:
        load_weights(tampered)
    sic = tmp_path / "a.sic"
    sic.write_bytes(sicc.encode(str(REPO / "examples" / "kodim23.png"), levels=2))
    assert_error(cli_inprocess(["decode", sic, "-o", tmp_path / "a.png", "--weights", tampered]), 4,
                 str(refused.value))
    assert not (tmp_path / "a.png").exists()


def test_the_shipped_id_is_the_one_the_golden_files_the_benchmark_and_the_card_name():
    shipped = load_weights(None).model_id.hex()
    golden = json.loads((REPO / "tests" / "data" / "golden-shipped.json").read_text())["model_id"]
    bench = json.loads((REPO / "bench" / "results.json").read_text())["model"]["id"]
    assert shipped == golden == bench
    assert f"model `{shipped}`" in (REPO / "sicc" / "weights" / "MODEL_CARD.md").read_text()
    assert set(LEGACY_GRAPH_DIGESTS) == {"3b3f2723b056de3f", "bc7e96de13fd5094"}


def test_tampered_graph_of_an_exported_file_is_refused(tmp_path, tiny_weights):
    """sicc-weights-3: the manifest records each graph's digest and the id covers them; a changed
    graph is refused by name, and a forger who recomputes digest and id gets another model id,
    under which no file of the original model decodes."""
    files = members(tiny_weights)
    assert manifest_of(files)["format"] == "sicc-weights-3"
    tampered = rewrite(tiny_weights, tmp_path / "neg.npz", {"g_s": negated_g_s(files)})
    with pytest.raises(WeightsError, match="its g_s graph is not the one its manifest records"):
        load_weights(tampered)
    tampered = rewrite(tiny_weights, tmp_path / "neg2.npz", {"g_s": negated_g_s(files)},
                       manifest=lambda m: m["graphs"]["g_s"].update(
                           sha256=__import__("hashlib").sha256(negated_g_s(files).SerializeToString()).hexdigest()))
    with pytest.raises(WeightsError, match="weights do not match their model id"):
        load_weights(tampered)
    forged = consistent(tmp_path / "neg2.npz")
    assert load_weights(forged).model_id != load_weights(tiny_weights).model_id


def test_unknown_legacy_file_is_refused(tmp_path, tiny_weights):
    """A sicc-weights-2 file that is not one of the recorded ones: its graphs are covered by
    nothing, so it is refused with what to do."""
    from sicc.model.config import ModelConfig
    from sicc.model.weights import _read_members, compute_model_id

    with open(tiny_weights, "rb") as handle:
        arrays = _read_members(handle, tiny_weights)
    m = json.loads(bytes(arrays["manifest"]).decode())
    state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    old_id = compute_model_id(ModelConfig.from_dict(m["config"]), state, arrays["z_frequencies"], arrays["scale_table"])
    legacy = rewrite(tiny_weights, tmp_path / "old.npz",
                     manifest=lambda mm: mm.update(format="sicc-weights-2", model_id=old_id.hex()))
    with pytest.raises(WeightsError, match="not one this sicc knows.*export it again"):
        load_weights(legacy)


# -- graphs are checked against what the runtime expects ----------------------------------------
def with_allocation(files: dict[str, bytes], shape: list[int]):
    """g_s plus a ConstantOfShape of ``shape`` whose corner is added to the output: the same
    pixels, and a tensor of prod(shape) floats allocated on every run."""
    model = negated_g_s(files)
    model.graph.node.pop()  # no negation: only the allocation
    h = onnx.helper
    model.graph.node.extend([
        h.make_node("Constant", [], ["big_shape"], value=h.make_tensor("s", onnx.TensorProto.INT64, [4], shape)),
        h.make_node("ConstantOfShape", ["big_shape"], ["big"]),
        h.make_node("Constant", [], ["zero4"], value=h.make_tensor("z", onnx.TensorProto.INT64, [4], [0, 0, 0, 0])),
        h.make_node("Constant", [], ["one4"], value=h.make_tensor("o", onnx.TensorProto.INT64, [4], [1, 1, 1, 1])),
        h.make_node("Slice", ["big", "zero4", "one4"], ["corner"]),
        h.make_node("Add", ["pre_output", "corner"], ["output"]),
    ])
    return model


def test_graph_that_allocates_4_gib_is_refused_before_it_runs(tmp_path, tiny_weights):
    """A consistent file (id recomputed) whose g_s makes a 4 GiB tensor on every run: refused at
    load, from the graph alone, in well under a second; the same graph at 1 MiB is accepted."""
    files = members(tiny_weights)
    small = consistent(rewrite(tiny_weights, tmp_path / "small.npz", {"g_s": with_allocation(files, [1, 1, 512, 512])}))
    load_weights(small)
    bomb = consistent(rewrite(tiny_weights, tmp_path / "bomb.npz", {"g_s": with_allocation(files, [1, 1, 32768, 32768])}))
    start = time.monotonic()
    with pytest.raises(WeightsError, match="ConstantOfShape makes a tensor of shape \\(1, 1, 32768, 32768\\)"):
        load_weights(bomb)
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("change,message", [
    ("expand", "op Expand, which sicc's transforms do not use"),
    ("domain", "another domain"),
    ("input", "its input is"),
    ("upsample", "where \\(1, 3, 320, 320\\) is expected"),
])
def test_graphs_the_runtime_does_not_expect_are_refused(tmp_path, tiny_weights, change, message):
    files = members(tiny_weights)
    model = graph_of(files, "g_s")
    h = onnx.helper
    if change == "expand":
        model = negated_g_s(files)
        model.graph.node[-1].op_type = "Expand"
    elif change == "domain":
        model = negated_g_s(files)
        model.graph.node[-1].domain = "com.microsoft"
    elif change == "input":
        model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    else:  # a 2x nearest upsampling written as DepthToSpace of a channel-repeating 1x1 Conv
        model = negated_g_s(files)
        model.graph.node.pop()
        weight = np.tile(np.eye(3, dtype=np.float32), (4, 1)).reshape(12, 3, 1, 1)
        model.graph.node.extend([h.make_node("Constant", [], ["up_w"], value=onnx.numpy_helper.from_array(weight)),
                                 h.make_node("Conv", ["pre_output", "up_w"], ["up"], kernel_shape=[1, 1]),
                                 h.make_node("DepthToSpace", ["up"], ["output"], blocksize=2)])
    bad = consistent(rewrite(tiny_weights, tmp_path / "bad.npz", {"g_s": model}))
    with pytest.raises(WeightsError, match=message):
        load_weights(bad)
    assert_error(cli_inprocess(["encode", REPO / "examples" / "kodim23.png", "-o", tmp_path / "x.sic",
                                "--weights", bad]), 4, "g_s graph is refused")


def test_checker_reads_graphs_as_onnx_does(tiny_weights):
    """The runtime's protobuf reader sees the ops and tensors the onnx package sees."""
    files = members(default_weights_path())
    for name in ("g_a", "h_a", "g_s"):
        model = graph_of(files, name)
        graph = graph_check._parse_model(model.SerializeToString())
        ops = [graph_check._text(graph_check._one(graph_check._fields(n), 4)) for n in graph_check._all(graph, 1)]
        assert ops == [n.op_type for n in model.graph.node]


def test_reference_sides_cover_the_largest_tiles():
    from sicc import tiling

    assert graph_check.REFERENCE_SIDE["g_a"] >= (tiling.TILE_LATENT + 2 * tiling.ANALYSIS_HALO) * 16
    assert graph_check.REFERENCE_SIDE["h_a"] >= (tiling.HYPER_TILE + 2 * tiling.HYPER_HALO) * 4
    assert graph_check.REFERENCE_SIDE["g_s"] >= tiling.TILE_LATENT + 2 * tiling.SYNTHESIS_HALO


# -- config and archive ----------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,message", [
    ("levels", 0, "levels=0 is outside 1..255"),
    ("latent", 30, "latent=30 must be a multiple of levels=16"),
    ("hidden", "64", "hidden='64' is not an integer"),
    ("weight_bits", 99, "weight_bits=99 is outside"),
    ("extra", 1, "field 'extra' is unknown"),
])
def test_bad_config_is_refused_with_a_clear_message(tmp_path, tiny_weights, field, value, message):
    bad = rewrite(tiny_weights, tmp_path / "cfg.npz", manifest=lambda m: m["config"].update({field: value}))
    with pytest.raises(WeightsError, match=f"invalid model config: {message}"):
        load_weights(bad)
    assert_error(cli_inprocess(["decode", REPO / "tests" / "data" / "golden-tiny.sic", "-o", tmp_path / "x.png",
                                "--weights", bad]), 4, message)


def zip_bomb(path: Path, gib: int = 2) -> Path:
    """A weights file with one honest member of ``gib`` GiB of zeros (a float32 .npy), deflated to
    a few MB: every size in the archive is true."""
    head = np.lib.format.magic(1, 0) + _npy_header(gib << 28)
    files = members(REPO / "tests" / "data" / "golden-tiny.npz")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        with archive.open("model/bomb.npy", "w", force_zip64=True) as member:
            member.write(head)
            block = bytes(1 << 24)
            for _ in range(gib << 6):
                member.write(block)
    return path


def _npy_header(count: int) -> bytes:
    text = repr({"descr": "<f4", "fortran_order": False, "shape": (count,)}).encode()
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return len(text).to_bytes(2, "little") + text


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return zip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.npz")


def test_zip_bomb_is_refused_from_its_directory(bomb, tmp_path):
    """2 GiB of zeros in a few MB: refused from the declared sizes before anything is inflated,
    in a fresh process under a 1.5 GiB address-space limit (it used to inflate the member whole)."""
    assert bomb.stat().st_size < 16 << 20
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    proc = subprocess.run([*sicc_command(), "decode", str(REPO / "tests" / "data" / "golden-tiny.sic"), "-o",
                           str(tmp_path / "x.png"), "--weights", str(bomb)], capture_output=True, env=env,
                          preexec_fn=limit, timeout=120)
    elapsed = time.monotonic() - start
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 4 and len(lines) == 1, proc.stderr
    assert "declare" in lines[0] and "zip bomb" in lines[0]
    assert elapsed < 10, elapsed


def test_member_whose_header_lies_about_its_size_is_refused(tmp_path):
    files = members(REPO / "tests" / "data" / "golden-tiny.npz")
    files["model/h_a.0.bias.npy"] = np.lib.format.magic(1, 0) + _npy_header(1 << 40) + b"\0" * 64
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with pytest.raises(WeightsError, match="declares shape \\(1099511627776,\\) but holds 64 bytes"):
        load_weights(path)
