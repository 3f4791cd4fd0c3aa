"""The GPU burst, rehearsed on the CPU with the tiny model: bundle -> scripts/gpu-burst.sh start
(stops on its wall-clock budget) -> join -> resume -> join -> export -> weights that decode.

This is the exact path a lent GPU runs (docs/training.md), with SICC_DEVICE=cpu.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SHARED, TORCH_MISSING, synthetic_image

pytest.importorskip("torch", reason=TORCH_MISSING)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-burst.sh"

pytestmark = pytest.mark.skipif(not (SHARED / "weights" / "alexnet_features.pth").is_file(),
                                reason="metric weights absent (../shared/data/weights)")


def _burst(args: list[str], env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _tiny_args() -> list[str]:
    return ["--config", "tiny", "--init", "scratch", "--batch", "2", "--crop", "64", "--threads", "1",
            "--lr-warmup", "5"]


def test_gpu_burst_path_on_cpu(tmp_path):
    import torch

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(synthetic_image(80, 112, seed=i)).save(photos / f"p{i}.png")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "sicc.train", "bundle", "-o", str(bundle), "--data", str(photos),
                    "--crop", "64"], cwd=REPO, check=True, capture_output=True)
    assert (bundle / "photos.npz").is_file() and (bundle / "weights" / "alexnet_features.pth").is_file()

    # A stand-in for nvidia-smi: the utilization it reports goes up by 10 with each reading.
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\nn=$(cat "$0.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.n"\n'
                   'echo "$((n * 10 + 10)), $((n + 500))"\n')
    smi.chmod(0o755)
    env = {**os.environ, "SICC_BUNDLE": str(bundle), "SICC_DEVICE": "cpu", "PYTHON": sys.executable,
           "SICC_BURST_STATE": str(tmp_path / "state"), "OUT": str(tmp_path / "out1"), "SICC_WATCH": "120",
           "OMP_NUM_THREADS": "1", "SICC_NVIDIA_SMI": str(smi), "SICC_WATCH_POLL": "1"}
    first = _burst(["start", "0.1", *_tiny_args()], env)
    assert "stopped at step" in first.stdout and "running: no" in first.stdout
    # sampled only while the run logged steps, and summed up in status.txt
    samples = (tmp_path / "out1" / "gpu-util.csv").read_text().split()
    n = len(samples)
    assert n >= 1 and samples == [f"{10 * i + 10},{i + 500}" for i in range(n)]
    median = sorted(10 * i + 10 for i in range(n))[(n - 1) // 2]
    assert (f"GPU while training: {n} samples, utilization median {median} % (range 10 to {10 * n}), "
            f"memory up to {n + 499} MiB") in (tmp_path / "out1" / "status.txt").read_text()
    parts = sorted((tmp_path / "out1").glob("checkpoint.pt.part*"))
    assert parts and (tmp_path / "out1" / "log.jsonl.gz").is_file()

    # Back "here": join the parts into the bundle, then a fresh machine resumes from them.
    _burst(["join", str(tmp_path / "out1"), str(bundle)], env)
    step = torch.load(bundle / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert step > 0
    env2 = {**env, "SICC_BURST_STATE": str(tmp_path / "state2"), "OUT": str(tmp_path / "out2"),
            "SICC_HORIZON": str(step + 4)}
    _burst(["resume", "1", "--threads", "1"], env2)  # batch, crop and warm-up come from the checkpoint
    _burst(["join", str(tmp_path / "out2"), str(tmp_path / "run")], env2)
    resumed = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert resumed["step"] == step + 4
    assert resumed["settings"]["batch"] == 2 and resumed["settings"]["lr_warmup"] == 5
    from sicc.train.loop import TrainSettings, learning_rate, resume_schedule

    saved = resumed["settings"]
    # the new horizon continues the first run's decay from where it stood
    schedule = TrainSettings(lr=saved["lr"], lr_min=saved["lr_min"], lr_warmup=5)
    resume_schedule(schedule, torch.load(bundle / "checkpoint.pt", map_location="cpu", weights_only=True), step + 4)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(step + 1, step + 5))
    assert [r["lr"] for r in log] == [round(learning_rate(r["step"] - 1, schedule), 6) for r in log]  # as logged
    # the new end is at the floor: the decay reaches lr_min at the new horizon, wherever the first run's
    # budget stopped it (a busy machine stops it early in its decay, and its last steps then stay well
    # above the floor: this asserted the last logged rate was near lr_min and failed so in session 31)
    assert learning_rate(step + 4, schedule) == pytest.approx(schedule.lr_min)
    decay = [r["lr"] for r in log if r["step"] > schedule.lr_warmup]
    assert all(a >= b for a, b in zip(decay, decay[1:]))

    weights = tmp_path / "burst-weights"
    done = subprocess.run([sys.executable, "-m", "sicc.train", "export", str(tmp_path / "run" / "checkpoint.pt"),
                           "-o", str(weights), "--log", str(tmp_path / "run" / "log.jsonl")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import sicc

    exported = next(p for p in tmp_path.iterdir() if p.name.startswith("burst-weights"))
    codec = sicc.Codec.load(exported)
    from sicc.model.weights import load_weights

    run = load_weights(exported).training["runs"][-1]  # the checkpoint's settings travel with its run
    assert run["settings"]["batch"] == 2 and run["settings"]["lr_warmup"] == 5 and run["settings"]["texture"] == 0.5
    assert run["hardware"] == ["CPU"]  # the machines of the run (both commands here; a GPU's name there)
    data = codec.encode(synthetic_image(64, 64, seed=5))
    (image,) = codec.decode(data, spread=0)
    assert image.size == (64, 64)


_GPU_MACHINE_LACKS = ("constriction", "compressai", "lpips", "click")


def test_training_needs_nothing_a_gpu_machine_lacks():
    """The GPU image has torch, numpy, pillow, tqdm and onnxruntime, but no constriction, compressai,
    lpips or click: the training entry and its start from the shipped weights must not import them."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {_GPU_MACHINE_LACKS!r}:
            raise ImportError('not on the GPU machine: ' + name)
sys.meta_path.insert(0, Block())
import sicc.train.__main__
from sicc.train.export import load_trainable
from sicc.model.weights import default_weights_path
from sicc.train.perceptual import LPIPSLoss
net = load_trainable(default_weights_path())
print(sum(p.numel() for p in net.parameters()))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 10_000
