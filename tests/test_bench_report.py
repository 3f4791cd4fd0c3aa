"""The benchmark's reporting, matching and caching logic on made-up rows: no Kodak, no metric weights,
so CI runs it (tests/test_bench.py needs the Kodak images)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import TORCH_MISSING

pytest.importorskip("torch", reason=TORCH_MISSING)  # the benchmark package scores with torch metrics


def test_log_bpp_interpolation_reproduces_published_ms_illm_dists():
    from sicc.bench.curves import interpolate, matched
    from sicc.bench.reference import ms_illm_kodak

    points = ms_illm_kodak()
    got = [round(interpolate(points, "dists", bpp), 3) for bpp in (0.1, 0.2, 0.3, 0.5)]
    assert got == [0.099, 0.073, 0.061, 0.044]
    assert interpolate(points, "dists", 0.01) is None and interpolate(points, "dists", 2.0) is None
    assert matched(points, [0.0443454347550869])[0]["psnr"] == pytest.approx(24.729001998901367)



def _det_rows(image: str, values: dict[int, tuple[float, float]]) -> list[dict]:
    return [{"image": image, "mode": "det", "level": level, "bpp": bpp, "dists": d, "lpips": d, "psnr": 30 - 10 * d}
            for level, (bpp, d) in values.items()]


def _both_rows(image: str, values: dict[int, tuple[float, float]], sampled_shift: float = 0.0) -> list[dict]:
    """Deterministic rows and sampled rows (``sampled_shift`` worse in DISTS and LPIPS) of one image."""
    det = _det_rows(image, values)
    return det + [{**r, "mode": "sampled", "dists": r["dists"] + sampled_shift, "lpips": r["lpips"] + sampled_shift}
                  for r in det]


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

    levels = lambda shift: {1: (0.05, 0.5 - shift), 2: (0.2, 0.3 - shift), 3: (0.6, 0.2 - shift),
                            4: (1.2, 0.1 - shift)}
    old = results("old", [r for image in "abc" for r in _both_rows(image, levels(0.0))])
    better = results("new", [r for i, image in enumerate("abc") for r in _both_rows(image, levels(0.01 + i / 1000))])
    text = score_table(better, old)
    assert "Change against old (± jackknife standard error over 3 images)" in text
    assert "| dists | -0.0110 ± 0.0006 |" in text  # se of a mean of 3: 0.001 / sqrt(3)
    assert "Verdict: ships" in text
    worse = results("new", [r for i, image in enumerate("abc") for r in _both_rows(image, levels(-0.01 - i / 1000))])
    assert "Verdict: does not ship: worse by more than one standard error" in score_table(worse, old)
    assert "Verdict" not in score_table(better, None)


def test_the_shipping_rule_guards_the_sampled_decode_psnr_and_the_high_levels():
    """A candidate better at 0.1-0.5 bpp still does not ship if it loses, beyond two standard errors,
    the sampled decode, the deterministic PSNR, or levels 9-16 (0.75, 1 and 1.2 bpp)."""
    from sicc.bench.report import guard_verdict, ship_guards, ship_verdict, shipping_verdict
    from sicc.bench.__main__ import model_changes

    def results(model: str, rows: list[dict]) -> dict:
        return {"model": {"id": model}, "per_image": {"sicc": rows}}

    def levels(low: float, high: float = 0.0, psnr: float = 0.0) -> dict:
        return {1: (0.05, 0.5 - low), 2: (0.2, 0.3 - low), 3: (0.6, 0.2 - low), 4: (1.2, 0.1 - high)}

    old = results("old", [r for image in "abcd" for r in _both_rows(image, levels(0.0))])

    def candidate(low, high=0.0, sampled=0.0, psnr_drop=0.0) -> tuple[bool, str]:
        rows = []
        for i, image in enumerate("abcd"):
            shift = sampled[i] if isinstance(sampled, list) else sampled
            for r in _both_rows(image, levels(low + i / 1000, high + i / 1000), shift + i / 1000):
                rows.append({**r, "psnr": r["psnr"] - psnr_drop - i / 100})
        new = results("new", rows)
        changes = model_changes(new, old)
        return shipping_verdict(changes, ship_guards(new, old, changes))

    ok, why = candidate(0.01)
    assert ok and "no guarded figure lost" in why
    ok, why = candidate(0.01, sampled=0.02)  # the sampled decode loses .01
    assert not ok and "sampled decode: DISTS at 0.1 bpp" in why and "LPIPS" in why
    ok, why = candidate(0.01, high=-0.02)  # level 4 (1.2 bpp) worse: 0.75, 1 and 1.2 bpp lose
    assert not ok and "high rates (levels 9-16): DISTS at 1 bpp" in why and "DISTS at 1.2 bpp" in why
    ok, why = candidate(0.01, psnr_drop=0.5)  # DISTS better (so PSNR of this fixture rises by .1) but .5 dB lost
    assert not ok and "deterministic PSNR: PSNR at 0.2 bpp" in why
    ok, why = candidate(0.01, sampled=[0.0145, 0.0065, 0.0145, 0.0065])  # +.0005 ± .002 sampled: noise, ships
    assert ok, why
    # a deterministic-only score run cannot show the guards: it does not ship, and says why
    det_only = results("new", [r for i, image in enumerate("abcd") for r in _det_rows(image, levels(0.01 + i / 1000))])
    changes = model_changes(det_only, old)
    assert ship_verdict(changes)[0]
    ok, why = guard_verdict(ship_guards(det_only, old, changes))
    assert not ok and "not measured: sampled decode" in why


def test_compare_command_exits_on_the_verdict(tmp_path):
    """`python -m sicc.bench compare`: the verdict as an exit status, for scripts (0 ships, 1 does not)."""
    from click.testing import CliRunner

    from sicc.bench.__main__ import main

    def results(model: str, shift: float) -> dict:
        rows = [r for i, image in enumerate("abc")
                for r in _both_rows(image, {1: (0.05, 0.5 - shift - i / 1000), 2: (0.2, 0.3 - shift - i / 1000),
                                            3: (0.6, 0.2 - shift - i / 1000), 4: (1.2, 0.1 - shift - i / 1000)})]
        return {"model": {"id": model}, "per_image": {"sicc": rows}, "matched": {"at_targets": {
            "sicc_det": [{"bpp": t, "dists": 0.3, "lpips": 0.3, "psnr": 25.0} for t in (0.1, 0.2, 0.3, 0.5)]},
            "labels": {}}}

    paths = {}
    for name, model, shift in (("old", "old", 0.0), ("better", "new", 0.01), ("worse", "new", -0.01)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(results(model, shift)))
    run = lambda new: CliRunner().invoke(main, ["compare", "--results", str(paths[new]),
                                                "--previous", str(paths["old"])])
    ships, fails = run("better"), run("worse")
    assert ships.exit_code == 0 and "Verdict: ships" in ships.output and str(paths["old"]) in ships.output
    assert fails.exit_code == 1 and "Verdict: does not ship" in fails.output
    (tmp_path / "bad.json").write_text("{not json")
    bad = CliRunner().invoke(main, ["compare", "--results", str(tmp_path / "bad.json"), "--previous", str(paths["old"])])
    assert bad.exit_code == 1 and "Error:" in bad.output and "Traceback" not in bad.output


def _card_run(log: str, settings: dict | None = None, texture: bool = False, hours: float = 0.5,
              hardware: list[str] | None = None) -> dict:
    mean = {"loss": 1.0, "full_bpp": 0.5, "full_psnr": 25.0, "full_lpips": 0.2, **({"full_texture": 0.1} if texture else {})}
    return {"log": log, "first_step": 1, "last_step": 10, "hours": hours, "final_100_steps_mean": mean,
            **({"settings": settings} if settings is not None else {}),
            **({"hardware": hardware} if hardware is not None else {})}


def test_model_card_training_table_names_each_runs_objective():
    from sicc.bench.report import training_summary_text

    run = _card_run

    text = training_summary_text({"step": 30, "runs": [run("old"), run("plain", {"texture": 0.0}),
                                                       run("tex", {"texture": 0.5}, texture=True),
                                                       run("tex-unrecorded", texture=True)]})
    rows = {line.split("|")[1].strip(): line.split("|")[6].strip() for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| log")}
    assert rows == {"old": "method.md", "plain": "method.md", "tex": "method.md + 0.5 × texture",
                    "tex-unrecorded": "method.md + texture"}
    aimed = {"texture": 0.5, "decoder_only": True, "deterministic_share": 0.25, "deterministic_from": 4,
             "low_levels": 0.5, "full_weight": 0.5, "low_mse": 2.0, "level_film": True, "level_film_lr": 40.0,
             "high_mse": 2.0, "dists": 2.0, "dists_levels": 8, "adversarial": 0.0}
    aimed_text = training_summary_text({"step": 10, "runs": [run("aimed", aimed, texture=True),
                                                       run("paper", {"texture": 0.5, "full_weight": 0.5,
                                                                     "low_mse": 1.0, "level_film": False}),
                                                       run("judged", {"dists": 2.0, "dists_levels": 0,
                                                                      "adversarial": 0.1})]})
    rows = {line.split("|")[1].strip(): line.split("|")[6].strip() for line in aimed_text.splitlines()
            if line.startswith("| ") and not line.startswith("| log")}
    assert rows == {"aimed": "method.md + 0.5 × texture; g_s only, 0.25 of level steps at spread 0 from level 4, "
                             "levels 1–8 drawn 0.5, levels 1–8 MSE × 2, levels 9–16 MSE × 2, DISTS × 2 at levels 1–8, "
                             "level tables at 40 × the rate",
                    "paper": "method.md + 0.5 × texture", "judged": "method.md; DISTS × 2, adversarial × 0.1"}
    assert "30 steps in 2.00 hours" in text


def test_model_card_hours_are_split_by_the_hardware_each_run_recorded():
    from sicc.bench.report import training_hours, training_summary_text

    runs = [_card_run("old", hours=1.25), _card_run("cpu", hours=0.5, hardware=["CPU"]),
            _card_run("gpu", hours=0.15, hardware=["NVIDIA H200"]),
            _card_run("moved", hours=0.1, hardware=["NVIDIA H200", "CPU"])]
    assert training_hours(runs) == pytest.approx({"CPU": 1.75, "NVIDIA H200": 0.15, "NVIDIA H200 + CPU": 0.1})
    text = training_summary_text({"step": 40, "runs": runs})
    assert "40 steps in 2.00 hours of training steps: 1.75 on the CPUs, 0.15 on NVIDIA H200, " in text
    hardware = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in text.splitlines()
                if line.startswith("| ") and not line.startswith("| log")}
    assert hardware == {"old": "CPU", "cpu": "CPU", "gpu": "NVIDIA H200", "moved": "NVIDIA H200 + CPU"}
    gpu_only = training_summary_text({"step": 10, "runs": [runs[2]]})
    assert "0.15 on NVIDIA H200 (wall time of the steps themselves)." in gpu_only and "shared" not in gpu_only


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


def test_tools_reports_each_missing_codec_tool(monkeypatch):
    """``python -m sicc.bench tools`` lists the four end-to-end tools and fails when one is missing."""
    from click.testing import CliRunner

    from sicc.bench import speed
    from sicc.bench.__main__ import main

    installed = {"cjxl", "djxl", "avifenc", "avifdec"}
    monkeypatch.setattr(speed, "which", lambda name: f"/opt/bin/{name}" if name in installed else None)
    result = CliRunner().invoke(main, ["tools"])
    assert result.exit_code == 0, result.output
    assert all(f"/opt/bin/{name}" in result.output for name in installed)
    installed.discard("avifdec")
    result = CliRunner().invoke(main, ["tools"])
    assert result.exit_code == 1
    assert "avifdec  not installed" in result.output and "missing: avifdec" in result.output


def test_baseline_commands_skips_a_codec_whose_tool_is_missing(monkeypatch, tmp_path):
    """The end-to-end rows use the same probe as ``bench tools``: a codec with a missing tool is
    reported as not installed, naming the tool, and nothing is run for it."""
    from sicc.bench import speed

    installed = {"djxl", "avifenc"}
    monkeypatch.setattr(speed, "which", lambda name: f"/opt/bin/{name}" if name in installed else None)
    ran = []
    monkeypatch.setattr(speed, "_median_proc", lambda cmd, *a, **k: ran.append(cmd[0]))
    out = speed.baseline_commands(speed.SpeedSettings(images=[]), tmp_path)
    assert out == {"jxl": {"available": False, "reason": "not installed: cjxl"},
                   "avif": {"available": False, "reason": "not installed: avifdec"}}
    assert ran == []
