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
    # two parts, each with the sums the machine checks them by: the photos, and every metric weight
    assert (bundle / "photos" / "photos.npz").is_file()
    from sicc.train.perceptual import METRIC_FILES

    assert sorted(line.split("  ")[1] for line in (bundle / "weights" / "SHA256SUMS").read_text().splitlines()) \
        == sorted(METRIC_FILES)
    assert json.loads((bundle / "MANIFEST.json").read_text())["parts"] == ["photos", "weights"]

    part_bytes = 200_000  # the tiny model's checkpoint in several parts, as a real one comes back
    # A stand-in for nvidia-smi: the utilization it reports goes up by 10 with each reading.
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\nn=$(cat "$0.n" 2>/dev/null || echo 0); echo $((n + 1)) > "$0.n"\n'
                   'echo "$((n * 10 + 10)), $((n + 500))"\n')
    smi.chmod(0o755)
    env = {**os.environ, "SICC_BUNDLE": str(bundle), "SICC_DEVICE": "cpu", "PYTHON": sys.executable,
           "SICC_BURST_STATE": str(tmp_path / "state"), "OUT": str(tmp_path / "out1"), "SICC_WATCH": "120",
           "OMP_NUM_THREADS": "1", "SICC_NVIDIA_SMI": str(smi), "SICC_WATCH_POLL": "1",
           "SICC_PART_BYTES": str(part_bytes)}
    staged = _burst(["stage"], env)
    assert "photos: here, checked" in staged.stdout and "weights: here, checked" in staged.stdout
    first = _burst(["start", "0.1", *_tiny_args()], env)
    assert "stopped at step" in first.stdout and "running: no" in first.stdout
    settings = torch.load(tmp_path / "state" / "run" / "checkpoint.pt", map_location="cpu",
                          weights_only=True)["settings"]
    assert settings["dists"] == 2 and settings["low_mse"] == 8 and settings["high_mse"] == 2  # the objective
    # sampled only while the run logged steps, and summed up in status.txt
    samples = (tmp_path / "out1" / "gpu-util.csv").read_text().split()
    n = len(samples)
    assert n >= 1 and samples == [f"{10 * i + 10},{i + 500}" for i in range(n)]
    median = sorted(10 * i + 10 for i in range(n))[(n - 1) // 2]
    assert (f"GPU while training: {n} samples, utilization median {median} % (range 10 to {10 * n}), "
            f"memory up to {n + 499} MiB") in (tmp_path / "out1" / "status.txt").read_text()
    parts = sorted((tmp_path / "out1").glob("checkpoint.pt.part*"))
    assert parts and (tmp_path / "out1" / "log.jsonl.gz").is_file()

    # Back "here": the parts into folders that each travel in one command (a whole-network checkpoint
    # of the 128-wide model, with its average and AdamW's moments, is over what one command carries),
    # then a fresh machine joins and resumes them.
    parts = sorted((tmp_path / "out1").glob("checkpoint.pt.part*"))
    assert len(parts) >= 3  # SICC_PART_BYTES below
    _burst(["join", str(tmp_path / "out1"), str(tmp_path / "joined")], env)
    step = torch.load(tmp_path / "joined" / "checkpoint.pt", map_location="cpu", weights_only=True)["step"]
    assert step > 0
    carried = _burst(["carry", str(tmp_path / "out1")], {**env, "SICC_CARRY_BYTES": str(2 * part_bytes)})
    folders = sorted(bundle.glob("resume-*"))
    assert len(folders) == (len(parts) + 1) // 2
    assert all(f"resume-{i + 1}" in carried.stdout for i in range(len(folders)))
    env2 = {**env, "SICC_BURST_STATE": str(tmp_path / "state2"), "OUT": str(tmp_path / "out2"),
            "SICC_HORIZON": str(step + 4)}
    first_missing = min(f.name for f in folders[-1].glob("checkpoint.pt.part*"))
    last = folders[-1].rename(tmp_path / "not-yet-carried")  # one folder has not arrived: nothing starts
    missing = subprocess.run(["bash", str(SCRIPT), "resume", "1"], cwd=REPO, env=env2, capture_output=True, text=True,
                             timeout=120)
    assert missing.returncode == 2 and f"{first_missing} is not here" in missing.stderr
    assert not (tmp_path / "state2" / "pid").exists()
    last.rename(folders[-1])
    assert f"{folders[-1].name}: here, checked" in _burst(["stage"], env2).stdout
    _burst(["resume", "1", "--threads", "1"], env2)  # batch, crop and warm-up come from the checkpoint
    _burst(["join", str(tmp_path / "out2"), str(tmp_path / "run")], env2)
    resumed = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert resumed["step"] == step + 4
    assert resumed["settings"]["batch"] == 2 and resumed["settings"]["lr_warmup"] == 5
    from sicc.train.loop import TrainSettings, learning_rate, resume_schedule

    saved = resumed["settings"]
    # the new horizon continues the first run's decay from where it stood
    schedule = TrainSettings(lr=saved["lr"], lr_min=saved["lr_min"], lr_warmup=5)
    resume_schedule(schedule, torch.load(tmp_path / "joined" / "checkpoint.pt", map_location="cpu", weights_only=True),
                    step + 4)
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
    assert run["settings"]["batch"] == 2 and run["settings"]["lr_warmup"] == 5 and run["settings"]["texture"] == 1.5
    assert run["hardware"] == ["CPU"]  # the machines of the run (both commands here; a GPU's name there)
    data = codec.encode(synthetic_image(64, 64, seed=5))
    (image,) = codec.decode(data, spread=0)
    assert image.size == (64, 64)


def test_a_burst_starts_nothing_without_both_parts_of_the_bundle(tmp_path):
    """A fresh machine that got only one part (the earlier command's machine went back), or a part that
    arrived damaged: `stage` says which, and `start` exits 2 with a one-line reason before any training."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(synthetic_image(80, 112, seed=0)).save(photos / "p0.png")
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "-m", "sicc.train", "bundle", "-o", str(bundle), "--data", str(photos),
                    "--crop", "64"], cwd=REPO, check=True, capture_output=True)
    env = {**os.environ, "SICC_BUNDLE": str(bundle), "SICC_DEVICE": "cpu", "PYTHON": sys.executable,
           "SICC_BURST_STATE": str(tmp_path / "state"), "OUT": str(tmp_path / "out")}

    def burst(*args):
        return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)

    import shutil

    shutil.rmtree(bundle / "weights")
    staged = burst("stage")
    assert staged.returncode == 0 and "photos: here, checked" in staged.stdout and "weights: absent" in staged.stdout
    started = burst("start", "0.1", *_tiny_args())
    assert started.returncode == 2 and not (tmp_path / "state" / "pid").exists()
    assert started.stderr.strip().splitlines() == [started.stderr.strip()]  # one line
    assert "gpu-bundle/weights is not on this machine (absent)" in started.stderr
    with open(bundle / "photos" / "photos.npz", "r+b") as f:  # a part cut short in transit
        f.truncate(f.seek(0, 2) // 2)
    staged = burst("stage")
    assert staged.returncode == 2 and "photos: CORRUPT" in staged.stdout
    started = burst("start", "0.1", *_tiny_args())
    assert started.returncode == 2 and "gpu-bundle/photos is not on this machine (CORRUPT" in started.stderr
    shutil.rmtree(bundle / "photos")
    assert burst("stage").returncode == 2  # nothing here at all


_GPU_MACHINE_LACKS = ("constriction", "compressai", "lpips", "click", "DISTS_pytorch", "torchvision")


def test_training_needs_nothing_a_gpu_machine_lacks():
    """The GPU image has torch, numpy, pillow, tqdm and onnxruntime, but no constriction, compressai,
    lpips or click (nor, as far as we know, DISTS_pytorch or torchvision): the training entry, its start
    from the shipped weights and the DISTS term must not import them."""
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
from sicc.train.perceptual import LPIPSLoss, DISTSVGG
net = load_trainable(default_weights_path())
DISTSVGG()
print(sum(p.numel() for p in net.parameters()))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) > 10_000
