"""Exit codes and one-line messages of the cases in issue #47, defect 9, run as whole processes:
closed standard streams, onnxruntime failures, model and level mismatches, `sicc info` on a damaged
file, an empty folder, a non-image on stdin, and a JPEG whose data ends early."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image

from sicc import container
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import CliResult, assert_error, cli_inprocess, cli_subprocess, sicc_command
from tests.spec_parser import read_chunks


def closed(fd: int, args: list) -> CliResult:
    """``sicc ARGS`` with file descriptor ``fd`` closed in the child (``<&-`` or ``>&-``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*sicc_command(), *map(str, args)], capture_output=fd != 1, timeout=120, env=env,
                          preexec_fn=lambda: os.close(fd), stderr=subprocess.PIPE if fd == 1 else None)
    return CliResult(proc.returncode, proc.stdout or b"", proc.stderr.decode("utf-8", "replace"))


def test_closed_standard_input_is_a_read_error(tmp_path):
    for args in (["encode", "-", "-o", tmp_path / "z.sic"], ["info", "-"], ["decode", "-", "-o", tmp_path / "z.png"]):
        assert_error(closed(0, args), 3, "cannot read standard input: it is closed")
    assert not (tmp_path / "z.sic").exists()


def test_closed_standard_output_is_a_write_error(tmp_path, small_file):
    source = tmp_path / "in.sic"
    source.write_bytes(small_file)
    for args in (["info", source], ["info", source, "--json"], ["truncate", source, "-o", "-", "--level", 1]):
        assert_error(closed(1, args), 5, "cannot write to standard output: it is closed")


def test_a_non_image_on_standard_input_is_a_read_error(tmp_path):
    result = cli_subprocess(["encode", "-", "-o", tmp_path / "z.sic"], input=b"abc")
    assert_error(result, 3, "standard input: not a readable image")


def test_a_graph_that_fails_at_run_time_is_one_line_and_exit_4(tmp_path, tiny_weights, small_file):
    """onnxruntime's coloured multi-line log is silenced; its failure is one line naming the graph."""
    onnx = pytest.importorskip("onnx")
    import dataclasses

    from onnx import TensorProto, helper

    from sicc.model.weights import compute_model_id, graph_digest, load_weights, write_weights

    weights = load_weights(tiny_weights)
    model = onnx.load_from_string(weights.graphs["g_s"])
    out = model.graph.output[0].name
    last = next(node for node in model.graph.node if out in node.output)
    last.output[:] = [name if name != out else out + "_pre" for name in last.output]
    model.graph.initializer.append(helper.make_tensor("bad_shape", TensorProto.INT64, [4], [1, 3, 7, 7]))
    model.graph.node.append(helper.make_node("Reshape", [out + "_pre", "bad_shape"], [out]))
    bad = tmp_path / "bad.npz"
    graphs = {**weights.graphs, "g_s": model.SerializeToString()}
    model_id = compute_model_id(weights.config, weights.model_state, weights.z_frequencies, weights.scale_table,
                                graph_digest(graphs, weights.graph_keys, weights.scale_offset))  # signed, as a forger would
    write_weights(bad, dataclasses.replace(weights, graphs=graphs, model_id=model_id))
    source = tmp_path / "in.sic"
    from sicc import Codec

    source.write_bytes(Codec.load(tiny_weights).encode(np.zeros((40, 40, 3), np.uint8)))

    refused = cli_subprocess(["decode", source, "-o", tmp_path / "out.png", "--weights", bad])
    assert_error(refused, 4, "its g_s graph is refused")  # the load-time check catches this one ...
    # ... so, to see what a graph that fails inside onnxruntime gives, the check is switched off in the child
    import sys

    from tests.clitools import CliResult

    child = ("import sicc.model.graph_check as g; g.check_graphs = lambda *a, **k: None; "
             "import sys; sys.argv[0] = 'sicc'; from sicc.cli import run; run()")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sicc.model.graph_check.check_graphs", lambda *a, **k: None)
        source.write_bytes(Codec.load(bad).encode(np.zeros((40, 40, 3), np.uint8)))  # g_a and h_a are intact
    proc = subprocess.run([sys.executable, "-c", child, "decode", str(source), "-o", str(tmp_path / "out.png"),
                           "--weights", str(bad)], capture_output=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    result = CliResult(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))
    line = assert_error(result, 4, "the g_s graph of the weights file failed", "cannot be reshaped")
    assert "\x1b[" not in result.stderr and "onnxruntime_src" not in line
    assert not (tmp_path / "out.png").exists()


def _with_header(data: bytes, offset: int, value: int) -> bytes:
    header = bytearray(data[:32])
    header[offset] = value
    header[28:32] = struct.pack("<I", zlib.crc32(bytes(header[:28])))
    return bytes(header) + data[32:]


def test_a_level_count_mismatch_does_not_print_the_same_id_twice(tmp_path, tiny_weights, tiny_codec, small_file):
    forged = tmp_path / "f.sic"
    forged.write_bytes(_with_header(small_file, 10, 12))  # model levels 12 where the model has 16
    result = cli_subprocess(["decode", forged, "-o", tmp_path / "out.png", "--weights", tiny_weights])
    line = assert_error(result, 4, "declares 12 levels", "which has 16")
    assert line.count(tiny_codec.model_id.hex()) == 1


def test_a_wrong_level_byte_is_named_plainly(tmp_path, small_file):
    chunks = read_chunks(small_file)
    second = chunks[2]  # HYPR, LEVL 1, LEVL 2: level 2's payload says 9
    payload = bytes([9]) + second.payload[1:]
    start = second.offset
    forged = (small_file[:start] + b"LEVL" + struct.pack("<I", len(payload)) + payload
              + struct.pack("<I", zlib.crc32(b"LEVL" + payload)) + small_file[start + 12 + second.length:])
    path = tmp_path / "f.sic"
    path.write_bytes(forged)
    result = cli_subprocess(["info", path])
    assert result.code == 4
    assert "level 2 is corrupt (its level byte says level 9)" in result.stderr, result.stderr
    assert "b'LEVL'" not in result.stderr + result.stdout.decode()


def test_info_on_a_file_with_a_corrupt_level_names_it_and_exits_4(tmp_path, small_file):
    ends = container.parse(small_file).chunk_ends
    damaged = bytearray(small_file)
    damaged[ends[5] + 20] ^= 0x01  # inside level 6
    path = tmp_path / "d.sic"
    path.write_bytes(bytes(damaged))
    result = cli_subprocess(["info", path])
    assert_error(result, 4, str(path), "level 6 is corrupt (checksum mismatch)", "5 levels before it")
    assert "level  5:" in result.stdout.decode()  # the report is printed first
    cut = tmp_path / "cut.sic"
    cut.write_bytes(small_file[: ends[5] + 20])
    result = cli_subprocess(["info", cut])
    assert result.code == 0 and "warning: " in result.stderr and "truncated inside level 6" in result.stderr
    assert_error(cli_subprocess(["info", cut, "--strict"]), 4, "truncated inside level 6")


def test_decoding_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = cli_subprocess(["decode", tmp_path / "empty", "-o", tmp_path / "x.png"])
    assert_error(result, 3, "no .sic files in this folder", "sub-folders need -r")
    (tmp_path / "images").mkdir()
    assert_error(cli_inprocess(["encode", tmp_path / "images", "-o", tmp_path / "out"]), 3, "no image files")


def test_sub_folders_skipped_without_r_are_reported(tmp_path, tiny_weights, small_file):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.sic").write_bytes(small_file)
    (tmp_path / "in" / "sub" / "b.sic").write_bytes(small_file)
    result = cli_inprocess(["decode", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights,
                            "--level", 1])
    assert result.code == 0, result.stderr
    assert "1 sub-folder skipped (sub); -r takes them too" in result.stderr
    assert (tmp_path / "out" / "a.png").exists() and not (tmp_path / "out" / "sub").exists()


def test_a_jpeg_whose_data_ends_early_warns(tmp_path, tiny_weights):
    """A baseline JPEG cut and closed with an EOI marker decodes without an error in Pillow (libjpeg
    fills flat grey): the encode says so."""
    from tests.conftest import synthetic_image

    buffer = io.BytesIO()
    Image.fromarray(synthetic_image(96, 128)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    result = cli_subprocess(["encode", cut, "-o", tmp_path / "cut.sic", "--weights", tiny_weights])
    assert result.code == 0
    assert "JPEG data ends early" in result.stderr and "rows are missing" in result.stderr
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    result = cli_inprocess(["encode", whole, "-o", tmp_path / "whole.sic", "--weights", tiny_weights])
    assert result.code == 0 and "warning" not in result.stderr
