"""The benchmark (sicc.bench): a quick run on a tiny untrained model, and the offline metric loaders."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import TORCH_MISSING  # noqa: E402
pytest.importorskip("torch", reason=TORCH_MISSING)

import torch
from PIL import Image, ImageFilter

from sicc.bench.images import default_kodak_dir
from sicc.train.perceptual import metric_weights_dir
from tests.conftest import KODAK_MISSING, synthetic_image

KODAK = default_kodak_dir()
LEVELS = [1, 2, 4, 8, 16]
METRIC_WEIGHTS_MISSING = (f"LPIPS/DISTS weights not found in {metric_weights_dir()}: set SICC_METRIC_WEIGHTS to a "
                          "folder holding alexnet_features.pth, lpips_v0.1/alex.pth, vgg16_features_fp16.pth and "
                          "dists_alpha_beta.pt (see README, 'Run the tests')")
pytestmark = [pytest.mark.skipif(not (KODAK / "kodim01.png").is_file(), reason=KODAK_MISSING),
              pytest.mark.skipif(not (metric_weights_dir() / "vgg16_features_fp16.pth").is_file(),
                                 reason=METRIC_WEIGHTS_MISSING)]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The suite shares the machine with training jobs: stay on one core."""
    from sicc import tiling

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiling, "default_threads", lambda: 1)
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from sicc.model.config import TINY
    from sicc.train.export import export_weights
    from sicc.train.objective import SICTrainable

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.npz"
    export_weights(SICTrainable(TINY), path, {})
    return path


@pytest.fixture(scope="module")
def kodak_crop() -> Image.Image:
    from sicc.bench.images import center_crop

    return center_crop(Image.open(KODAK / "kodim01.png").convert("RGB"), 192)


@pytest.fixture(scope="module")
def bench_run(tiny_weights, tmp_path_factory) -> tuple[Path, dict]:
    """One quick run (1 image, 192 px crop, 5 levels, two baselines, no speed part) through the CLI."""
    from click.testing import CliRunner

    from sicc.bench.__main__ import main

    out = tmp_path_factory.mktemp("bench")
    args = ["--quick", "--images", "1", "--crop", "192", "--levels", "1,2,4,8,16", "--idempotence-levels", "8",
            "--generations", "1", "--weights", str(tiny_weights), "--threads", "1",
            "--device", "cpu", "--codecs", "jpeg,webp", "--skip-speed", "--no-progress", "--out", str(out),
            "--baseline-cache", str(out / "baseline-cache.json")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    # --no-progress: no bar, but one line per image, so that a long run can be followed in its log.
    assert "bench: kodim01 done (1/1 images, " in result.output, result.output
    # The image's own time and, since this one runs the synonymy part, that part's share of it.
    assert re.search(r"kodim01 done \(1/1 images, \d+ s; this image \d+ s, synonymy \d+ s\)", result.output), \
        result.output
    return out, json.loads((out / "results.json").read_text())


# -- the benchmark run ------------------------------------------------------------------------


def test_results_structure(bench_run):
    out, results = bench_run
    for key in ("schema", "date", "command", "machine", "model", "settings", "metrics", "sicc", "baselines",
                "reference", "matched", "synonymy", "speed", "per_image"):
        assert key in results, key
    assert (out / "rd.png").stat().st_size > 10_000
    assert results["settings"]["image_names"] == ["kodim01"]
    assert isinstance(results["model"]["id"], str) and results["model"]["id"]
    assert results["sicc"]["truncate_is_prefix"] is True
    assert results["speed"] == {"skipped": True}
    assert set(results["baselines"]) == {"jpeg", "webp"}
    assert all(b["available"] and len(b["points"]) >= 3 for b in results["baselines"].values())
    matched = results["matched"]
    assert matched["targets"] == [0.1, 0.2, 0.3, 0.5] and "log(bpp)" in matched["method"]
    assert set(matched["at_targets"]) == {"sicc_det", "sicc_sampled", "jpeg", "webp", "ms_illm"}
    assert matched["at_sicc_levels"]["levels"] == LEVELS
    parts = results["duration_parts_s"]
    assert set(parts) == {"reference", "sicc", "baselines", "synonymy"}  # no speed part: --skip-speed
    assert parts["reference"] > 0 and parts["sicc"] > 0 and all(v >= 0 for v in parts.values())
    assert sum(parts.values()) <= results["duration_s"]


def test_sicc_levels_rise_in_rate(bench_run):
    _, results = bench_run
    for mode in ("det", "sampled"):
        points = results["sicc"]["levels"][mode]
        assert [p["level"] for p in points] == LEVELS
        bpps = [p["bpp"] for p in points]
        assert all(a < b for a, b in zip(bpps, bpps[1:])), bpps
        for p in points:
            assert 0 <= p["dists"] <= 1 and 0 <= p["lpips"] <= 1.5 and 0 < p["psnr"] < 100
            assert 0 < p["ms_ssim"] <= 1
    rows = [r for r in results["per_image"]["sicc"] if r["mode"] == "det"]
    sizes = [r["bytes"] for r in sorted(rows, key=lambda r: r["level"])]
    assert sizes == sorted(set(sizes))
    assert results["sicc"]["levels"]["det"][-1]["bpp"] == pytest.approx(sizes[-1] * 8 / 192**2, rel=1e-5)


def test_synonymy_section(bench_run):
    _, results = bench_run
    syn = results["synonymy"]
    assert [p["level"] for p in syn["diversity"]["levels"]] == LEVELS
    # A complete file decodes deterministically: every sample of level 16 is the same image.
    assert syn["diversity"]["levels"][-1]["mean_pairwise_lpips"] == pytest.approx(0, abs=1e-6)
    idem = syn["idempotence"]
    for mode in ("det", "sampled"):
        assert [(p["level"], p["generation"]) for p in idem[mode]] == [(8, g) for g in range(idem["generations"] + 1)]


def test_readme_section_is_generated(bench_run, tmp_path):
    from click.testing import CliRunner

    from sicc.bench.__main__ import main

    out, results = bench_run
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\nbefore\n<!-- bench:start -->\nold numbers\n<!-- bench:end -->\nafter\n")
    args = ["readme", "--results", str(out / "results.json"), "--readme", str(readme)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# title\n\nbefore\n") and text.endswith("after\n")
    section = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    assert "| DISTS ↓ | 0.1 bpp | 0.2 bpp | 0.3 bpp | 0.5 bpp |" in section
    assert "MS-ILLM (published)" in section and "JPEG" in section
    assert f"{results['sicc']['levels']['det'][0]['bytes']:.0f}" in section
    assert "rd.png" in section

    no_markers = tmp_path / "OTHER.md"
    no_markers.write_text("no section here\n")
    result = CliRunner().invoke(main, ["readme", "--results", str(out / "results.json"), "--readme", str(no_markers)])
    assert result.exit_code != 0 and no_markers.read_text() == "no section here\n"


# -- pieces -----------------------------------------------------------------------------------


def test_speed_inprocess_and_libraries(tiny_weights, kodak_crop):
    from sicc.bench.images import BenchImage
    from sicc.bench.progressive import load_codec
    from sicc.bench.speed import SpeedSettings, baseline_library, sicc_inprocess

    settings = SpeedSettings(images=[BenchImage("kodim01", kodak_crop.crop((0, 0, 128, 128)))], repeats=1)
    sicc_speed = sicc_inprocess(load_codec(tiny_weights), settings)
    assert sicc_speed["encode_s"] > 0 and sicc_speed["decode_s"] > 0 and sicc_speed["sampled_level"] == 8
    for name, part in baseline_library(settings).items():
        assert part["available"] and part["encode_s"] > 0 and part["decode_s"] > 0, name


def test_peak_rss_is_the_commands_own(tmp_path):
    """A child forked from a big process must not inherit that process's peak RSS."""
    import sys

    from sicc.bench.procs import run_measured

    ballast = bytearray(300 << 20)  # noqa: F841 - make this process big
    small = run_measured([sys.executable, "-S", "-c", "pass"])
    assert small.ok and small.max_rss_mib < 100
    big = run_measured([sys.executable, "-S", "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"])
    assert big.ok and 200 < big.max_rss_mib < 300
    assert run_measured(["sleep", "10"], timeout=0.5).returncode != 0


# -- offline metrics --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dists():
    from sicc.bench.metrics import build_dists

    return build_dists()


def test_dists_loads_every_backbone_parameter(dists):
    from sicc.train.perceptual import metric_weights_dir

    features = torch.load(metric_weights_dir() / "vgg16_features_fp16.pth", map_location="cpu", weights_only=True)
    params = dict(dists.named_parameters())
    assert set(params) - {"alpha", "beta"} == {
        f"stage{k}.{key.split('.', 1)[1]}" for key in features
        for k in [_stage_of(int(key.split(".")[1]))]
    }
    for key, tensor in features.items():
        index = int(key.split(".")[1])
        loaded = params[f"stage{_stage_of(index)}.{key.split('.', 1)[1]}"]
        assert torch.equal(loaded, tensor.float()), key
    alpha_beta = torch.load(metric_weights_dir() / "dists_alpha_beta.pt", map_location="cpu", weights_only=True)
    assert torch.equal(dists.alpha, alpha_beta["alpha"]) and torch.equal(dists.beta, alpha_beta["beta"])
    assert len(dists.load_report["backbone"]) == 26


def _stage_of(vgg_index: int) -> int:
    return 1 + sum(vgg_index > cut for cut in (4, 9, 16, 23))


def test_dists_values(dists, kodak_crop):
    from sicc.bench.metrics import to_tensor

    x = to_tensor(kodak_crop)
    blurred = to_tensor(kodak_crop.filter(ImageFilter.GaussianBlur(2)))
    noisy = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    assert float(dists(x, x)) == pytest.approx(0, abs=1e-6)
    d_blur, d_noise = float(dists(x, blurred)), float(dists(x, noisy))
    assert 0.05 < d_blur < 0.6 and 0.01 < d_noise < 0.6
    cached = dists.distance(dists.features(x), dists.features(blurred))
    assert float(cached) == pytest.approx(d_blur, abs=1e-6)  # cached-feature path == DISTS_pytorch forward


def test_lpips_alex_loads_every_backbone_parameter(kodak_crop):
    from sicc.bench.metrics import to_tensor
    from sicc.train.perceptual import load_lpips_alex, metric_weights_dir

    metric = load_lpips_alex()
    features = torch.load(metric_weights_dir() / "alexnet_features.pth", map_location="cpu", weights_only=True)
    backbone = {k: v for k, v in metric.state_dict().items() if k.startswith("net.")}
    assert len(backbone) == len(features) == 10
    for key, tensor in features.items():
        index = int(key.split(".")[1])
        match = [v for k, v in backbone.items() if k.endswith(f".{index}.{key.split('.')[2]}")]
        assert len(match) == 1 and torch.equal(match[0], tensor.float()), key
    x = to_tensor(kodak_crop) * 2 - 1
    y = to_tensor(kodak_crop.filter(ImageFilter.GaussianBlur(2))) * 2 - 1
    assert float(metric(x, x)) == pytest.approx(0, abs=1e-6)
    assert 0.05 < float(metric(x, y)) < 0.8
    assert not math.isnan(float(metric(x, y)))




def test_memory_probe_raises_the_pixel_budget_explicitly(tiny_weights, tmp_path, monkeypatch):
    """The 16K probe is over sicc's default budget: peak_memory passes --max-pixels (the padded size
    of the frame) to the sicc probes, and memprobe hands it to encode and decode."""
    from PIL import Image

    import sicc
    from sicc.bench import memprobe, speed
    from sicc.bench.procs import ProcResult
    from tests.conftest import synthetic_image

    commands = []
    monkeypatch.setattr(speed, "large_frame", lambda images, w, h: Image.new("RGB", (8, 8)))
    monkeypatch.setattr(speed, "run_measured", lambda cmd, *a, **k: commands.append(cmd) or ProcResult(0, 0, 1, ""))
    speed.peak_memory(speed.SpeedSettings(images=[]), tmp_path, (16384, 16384))
    sicc_probes = [cmd for cmd in commands if "sicc.bench.memprobe" in cmd]
    assert sicc_probes and all(cmd[cmd.index("--max-pixels") + 1] == str(1 << 28) for cmd in sicc_probes)

    source, coded, decoded = tmp_path / "in.png", tmp_path / "x.sic", tmp_path / "out.png"
    Image.fromarray(synthetic_image(72, 100)).save(source)  # pads to 128x128
    monkeypatch.setattr(sicc, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(sicc.InputTooLargeError):
        memprobe.main(["sicc-encode", str(source), str(coded), "--weights", str(tiny_weights)])
    memprobe.main(["sicc-encode", str(source), str(coded), "--weights", str(tiny_weights), "--max-pixels", "16384"])
    memprobe.main(["sicc-decode", str(coded), str(decoded), "--weights", str(tiny_weights), "--max-pixels", "16384"])
    assert Image.open(decoded).size == (100, 72)


def test_complete_file_is_scored_once_for_every_mode(tiny_weights):
    """With every level present a file decodes the same whatever the spread, so the benchmark scores
    it once and gives each mode that row; every shorter prefix is decoded and scored per mode."""
    from sicc.bench.images import BenchImage
    from sicc import Codec
    from sicc.bench.progressive import DET, SAMPLED, DecodeMode, evaluate_image

    tiny_codec = Codec.load(tiny_weights)
    calls = []

    class CountingMetrics:
        def compare(self, ref, img):
            calls.append(np.asarray(img).tobytes())
            return {"psnr": float(len(calls)), "ms_ssim": 0.0, "lpips": 0.0, "dists": 0.0}

    img = BenchImage("a", Image.fromarray(synthetic_image(64, 64, seed=3)))
    modes = [DecodeMode(DET, 0.0), DecodeMode(SAMPLED, 2.0, 0)]
    result = evaluate_image(tiny_codec, CountingMetrics(), img, None, modes)
    levels = tiny_codec.config.levels
    assert len(calls) == 2 * levels - 1
    last = {r["mode"]: r for r in result.rows if r["level"] == levels}
    assert last[DET]["psnr"] == last[SAMPLED]["psnr"]
    assert np.array_equal(np.asarray(result.decoded[DET][levels]), np.asarray(result.decoded[SAMPLED][levels]))
    assert len({r["psnr"] for r in result.rows}) == 2 * levels - 1
