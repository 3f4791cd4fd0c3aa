"""The benchmark (sicc.bench): a quick run on a tiny untrained model, and the offline metric loaders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from sicc.bench.images import default_kodak_dir
from tests.conftest import KODAK_MISSING, synthetic_image

KODAK = default_kodak_dir()
LEVELS = [1, 2, 4, 8, 16]
pytestmark = pytest.mark.skipif(not (KODAK / "kodim01.png").is_file(), reason=KODAK_MISSING)


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


def test_log_bpp_interpolation_reproduces_published_ms_illm_dists():
    from sicc.bench.curves import interpolate, matched
    from sicc.bench.reference import ms_illm_kodak

    points = ms_illm_kodak()
    got = [round(interpolate(points, "dists", bpp), 3) for bpp in (0.1, 0.2, 0.3, 0.5)]
    assert got == [0.099, 0.073, 0.061, 0.044]
    assert interpolate(points, "dists", 0.01) is None and interpolate(points, "dists", 2.0) is None
    assert matched(points, [0.0443454347550869])[0]["psnr"] == pytest.approx(24.729001998901367)


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


def _det_rows(image: str, values: dict[int, tuple[float, float]]) -> list[dict]:
    return [{"image": image, "mode": "det", "level": level, "bpp": bpp, "dists": d, "lpips": d, "psnr": 30 - 10 * d}
            for level, (bpp, d) in values.items()]


def test_previous_model_table_compares_on_common_images_only():
    """The shipping evidence uses only images both benchmarks measured, at matched bpp."""
    from sicc.bench.report import previous_model_table

    def results(model: str, rows: list[dict]) -> dict:
        return {"model": {"id": model}, "settings": {"image_names": sorted({r["image"] for r in rows})},
                "per_image": {"sicc": rows}}

    previous = results("old", _det_rows("a", {1: (0.1, 0.4), 2: (0.5, 0.2)}))
    current = results("new", _det_rows("a", {1: (0.1, 0.3), 2: (0.5, 0.1)})
                      + _det_rows("b", {1: (0.1, 0.9), 2: (0.5, 0.9)}))  # not in the previous run
    text = previous_model_table(current, previous)
    assert "`old`" in text and "the same 1 images" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0.5 |"))
    assert row.split("|")[2:4] == [" 0.200 ", " 0.100 "]  # DISTS previous, now (image b left out)
    assert "| 0.2 | – | – |" not in text  # 0.2 bpp lies on both curves
    assert "DISTS change ± SE" in text and row.split("|")[8] == " -0.1000 "  # one image: no standard error


def test_matched_change_is_the_difference_of_matched_curves_with_a_jackknife_error():
    """change = matched(new) - matched(old) on the common images; se from leaving each image out."""
    from sicc.bench.curves import matched, group_mean, matched_change

    old = [r for i, image in enumerate("abcd") for r in _det_rows(image, {1: (0.1, 0.5 + i / 100), 2: (0.4, 0.3)})]
    # image a improves by 0.04 at 0.1 bpp, the others by 0; image e exists only in the new run
    gains = {"a": 0.04, "b": 0.0, "c": 0.0, "d": 0.0}
    new = [r for i, image in enumerate("abcd")
           for r in _det_rows(image, {1: (0.1, 0.5 + i / 100 - gains[image]), 2: (0.4, 0.3)})]
    new += _det_rows("e", {1: (0.1, 9.0), 2: (0.4, 9.0)})
    got = matched_change(new, old, (0.1, 0.2, 0.4, 0.8), ("dists",))
    assert [p["images"] for p in got] == [4, 4, 4, 4]
    at01 = got[0]["dists"]
    assert at01["change"] == pytest.approx(-0.01)  # the mean of -0.04, 0, 0, 0
    # leave-one-out changes: -0 (a out), -0.04/3 three times; jackknife se = sqrt(3/4 * sum of squared deviations)
    loo = np.array([0.0, -0.04 / 3, -0.04 / 3, -0.04 / 3])
    assert at01["se"] == pytest.approx(math.sqrt(3 / 4 * np.sum((loo - loo.mean()) ** 2)))
    # halfway in log(bpp) between the two levels the change is half of the change at level 1
    assert got[1]["dists"]["change"] == pytest.approx(-0.005)
    assert got[2]["dists"] == {"change": pytest.approx(0.0), "se": pytest.approx(0.0)}
    assert got[3]["dists"] == {"change": None, "se": None}  # 0.8 bpp is off both curves
    # identical runs: no change, no noise; one image: no standard error
    same = matched_change(old, old, (0.1,), ("dists",))[0]["dists"]
    assert same == {"change": 0.0, "se": 0.0}
    single = matched_change(new, [r for r in old if r["image"] == "a"], (0.1,), ("dists",))[0]
    assert single["images"] == 1 and single["dists"]["se"] is None
    # the change agrees with the matched average curves the README prints
    old_curve = matched(group_mean(old, "level"), (0.1,))[0]["dists"]
    new_curve = matched(group_mean([r for r in new if r["image"] != "e"], "level"), (0.1,))[0]["dists"]
    assert at01["change"] == pytest.approx(new_curve - old_curve)


def _changes(values: dict[str, list[tuple[float, float]]]) -> list[dict]:
    return [{"bpp": bpp, "images": 24, **{m: {"change": values[m][i][0], "se": values[m][i][1]} for m in values}}
            for i, bpp in enumerate((0.1, 0.2, 0.3, 0.5))]


def test_ship_verdict_needs_a_clear_gain_and_no_loss_beyond_noise():
    from sicc.bench.report import ship_verdict

    tie = (0.0001, 0.001)
    clear_gain = (-0.005, 0.001)
    ok, why = ship_verdict(_changes({"dists": [clear_gain, tie, tie, tie], "lpips": [tie] * 4}))
    assert ok and "DISTS at 0.1 bpp" in why
    ok, why = ship_verdict(_changes({"dists": [clear_gain, (0.0011, 0.001), tie, tie], "lpips": [tie] * 4}))
    assert not ok and "DISTS at 0.2 bpp" in why and "more than one standard error" in why
    ok, why = ship_verdict(_changes({"dists": [(-0.0019, 0.001)] * 4, "lpips": [tie] * 4}))
    assert not ok and "no figure better" in why  # better everywhere, but never by two standard errors
    ok, why = ship_verdict(_changes({"dists": [clear_gain] * 3 + [(None, None)], "lpips": [clear_gain] * 4}))
    assert not ok and "DISTS at 0.5 bpp" in why and "not measured" in why
    ok, _ = ship_verdict(_changes({"dists": [clear_gain] * 4, "lpips": [(0.002, 0.001)] + [clear_gain] * 3}))
    assert not ok  # LPIPS counts as much as DISTS


def test_score_table_prints_the_change_and_the_verdict_against_the_reference():
    from sicc.bench.__main__ import score_table
    from sicc.bench.curves import TARGET_BPPS

    def results(model: str, rows: list[dict]) -> dict:
        return {"model": {"id": model}, "per_image": {"sicc": rows},
                "matched": {"at_targets": {"sicc_det": [{"bpp": t, "dists": 0.3, "lpips": 0.3, "psnr": 25.0}
                                                        for t in TARGET_BPPS]}, "labels": {}}}

    levels = lambda shift: {1: (0.05, 0.5 - shift), 2: (0.2, 0.3 - shift), 3: (0.6, 0.2 - shift)}
    old = results("old", [r for image in "abc" for r in _det_rows(image, levels(0.0))])
    better = results("new", [r for i, image in enumerate("abc") for r in _det_rows(image, levels(0.01 + i / 1000))])
    text = score_table(better, old)
    assert "Change against old (± jackknife standard error over 3 images)" in text
    assert "| dists | -0.0110 ± 0.0006 |" in text  # se of a mean of 3: 0.001 / sqrt(3)
    assert "Verdict: ships" in text
    worse = results("new", [r for i, image in enumerate("abc") for r in _det_rows(image, levels(-0.01 - i / 1000))])
    assert "Verdict: does not ship: worse by more than one standard error" in score_table(worse, old)
    assert "Verdict" not in score_table(better, None)


def test_model_card_training_table_names_each_runs_objective():
    from sicc.bench.report import training_summary_text

    def run(log: str, settings: dict | None = None, texture: bool = False) -> dict:
        mean = {"loss": 1.0, "full_bpp": 0.5, "full_psnr": 25.0, "full_lpips": 0.2, **({"full_texture": 0.1} if texture else {})}
        return {"log": log, "first_step": 1, "last_step": 10, "hours": 0.5, "final_100_steps_mean": mean,
                **({"settings": settings} if settings is not None else {})}

    text = training_summary_text({"step": 30, "runs": [run("old"), run("plain", {"texture": 0.0}),
                                                       run("tex", {"texture": 0.5}, texture=True),
                                                       run("tex-unrecorded", texture=True)]})
    rows = {line.split("|")[1].strip(): line.split("|")[5].strip() for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| log")}
    assert rows == {"old": "method.md", "plain": "method.md", "tex": "method.md + 0.5 × texture",
                    "tex-unrecorded": "method.md + texture"}
    assert "30 steps in 2.00 hours" in text


def test_speed_summary_is_the_ratio_of_the_measured_commands():
    from sicc.bench.report import speed_summary

    speed = {"sicc_cli": {"encode_s": 0.6, "decode_s": 0.8},
             "baseline_commands": {"jxl": {"available": True, "encode_s": 0.2, "decode_s": 0.16}},
             "load_average_before": [0.42, 1.0, 1.6]}
    text = speed_summary({"speed": speed})
    assert "`sicc decode` takes 5.0x the time of `djxl`" in text and "`sicc encode` 3.0x that of `cjxl`" in text
    assert "Load average 0.4, 1.0, 1.6" in text
    speed["baseline_commands"]["jxl"] = {"available": False}
    assert "djxl" not in speed_summary({"speed": speed})


def test_baseline_rows_are_measured_once_then_reused(tmp_path):
    """The cache key holds the codec's library and settings, the point and the image's pixels."""
    from PIL import Image

    from sicc.bench.baselines import Baseline
    from sicc.bench.cache import BaselineCache, image_digest
    from sicc.bench.images import BenchImage
    from sicc.bench.runner import _baseline_image
    from tests.conftest import synthetic_image

    calls = []

    def roundtrip(img, q):
        calls.append(q)
        return bytes(int(q)), img

    class _Metrics:
        def compare(self, ref, decoded):
            return {"psnr": float(len(calls)), "ms_ssim": 1.0, "lpips": 0.0, "dists": 0.0}

    codec = Baseline("fake", "Fake", "quality", (10, 20), (10,), roundtrip, "fake 1.0", {"mode": 1})
    img = BenchImage("a", Image.fromarray(synthetic_image(16, 16, seed=1)))
    cache = BaselineCache(tmp_path / "cache.json")
    first = _baseline_image(codec, _Metrics(), img, None, False, cache)
    assert calls == [10, 20] and cache.misses == 2
    cache.save()
    again = BaselineCache(tmp_path / "cache.json")
    second = _baseline_image(codec, _Metrics(), img, None, False, again)
    assert calls == [10, 20] and again.hits == 2 and second == first
    assert second[0]["image_sha256"] == image_digest(img.image)
    other_settings = Baseline("fake", "Fake", "quality", (10,), (10,), roundtrip, "fake 1.0", {"mode": 2})
    _baseline_image(other_settings, _Metrics(), img, None, False, again)
    other_pixels = BenchImage("a", Image.fromarray(synthetic_image(16, 16, seed=2)))
    _baseline_image(codec, _Metrics(), other_pixels, None, False, again)
    assert calls == [10, 20, 10, 10, 20]

    results = {"settings": {"crop": None}, "baselines": {"fake": {"library": "fake 1.0", "settings": {"mode": 1},
                                                                  "knob": "quality"}},
               "per_image": {"baselines": {"fake": first}}}
    seeded = BaselineCache(tmp_path / "empty.json")
    assert seeded.seed_from_results(results, {"a": image_digest(other_pixels.image)}) == 0
    assert seeded.seed_from_results(results, {"a": image_digest(img.image)}) == 2


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


def test_settle_load_waits_for_a_quiet_machine_and_gives_up_at_its_limit(monkeypatch):
    from sicc.bench import speed

    class Clock:
        now = 0.0

        def __call__(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    loads = iter([2.0, 1.6, 1.2, 0.9, 0.5])
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    clock = Clock()
    assert speed.settle_load(120, clock=clock, sleep=clock.sleep) == 15.0  # three waits, then 0.9 < 1.0
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (3.0, 0.0, 0.0))
    clock = Clock()
    assert speed.settle_load(12, clock=clock, sleep=clock.sleep) == 12.0  # never quiet: stops at the limit
