"""The JavaScript decoder (web/): its node tests (`npm test`) and, where Chromium is installed,
the page in a real headless browser (web/test/browser.mjs). Both compare with this Python
decoder; see web/README.md."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"


def _node_ready() -> str | None:
    """Why the node tests cannot run here, or None."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node and npm are not installed (CI installs them: apt-get install nodejs npm)"
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        return "web/node_modules is missing: run `npm ci` in web/ (CI does)"
    return None


def _env() -> dict[str, str]:
    return {**os.environ, "SICC_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}


def test_npm_test_decodes_the_golden_files_as_python_does(tmp_path):
    why = _node_ready()
    if why:
        pytest.skip(why)
    from tests.web_reference import main as write_reference

    write_reference([str(tmp_path)])  # once for all the node test files (each would make its own)
    env = {**_env(), "SICC_WEB_REFERENCE": str(tmp_path)}
    run = subprocess.run(["npm", "test", "--silent"], cwd=WEB, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "# fail 0" in run.stdout and "# skipped 0" in run.stdout, run.stdout[-3000:]


@pytest.mark.parametrize("model", ["shipped", "level-tables"])
def test_page_streams_a_file_in_headless_chromium(tmp_path, model):
    """Headless Chromium loads web/index.html from a throttled local server: level 1 is displayed
    before the download ends, the final canvas is within +-1 of the Python decode, and level 3
    with seed 7 (set through the slider and "new sample", which samples with spread 2) within +-1 of
    `sicc decode --level 3 --seed 7 --spread 2`. Also with the shipped model given random level
    tables (sicc.model.level_film), which the page must apply for the level it shows.
    SICC_UPDATE_SCREENSHOT=1 also writes the README's screenshot, docs/web.png."""
    why = _node_ready()
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if why or not chromium:
        pytest.skip(why or "chromium is not installed (CI installs it: apt-get install chromium chromium-driver)")
    import numpy as np

    import sicc
    from sicc.export.web import export_web, vendor_onnxruntime

    weights = None
    if model == "level-tables":
        from tests.web_reference import with_level_tables

        weights = with_level_tables(None, tmp_path / "film.npz", size=0.1)
    codec = sicc.Codec.load(weights)
    export_web(tmp_path / "model", weights)
    vendor_onnxruntime(WEB / "node_modules" / "onnxruntime-web" / "dist", tmp_path / "vendor")
    data = codec.encode(REPO / "examples" / "kodim23.png")
    (tmp_path / "kodim23.sic").write_bytes(data)
    image = codec.decode(data)[0]
    (tmp_path / "kodim23.rgb").write_bytes(np.asarray(image.convert("RGB"), dtype=np.uint8).tobytes())
    sample = codec.decode(data, level=3, seed=7, spread=sicc.SAMPLES_SPREAD)[0]  # "new sample" samples
    (tmp_path / "kodim23-l3-s7.rgb").write_bytes(np.asarray(sample.convert("RGB"), dtype=np.uint8).tobytes())
    env = {**_env(), "CHROMIUM": chromium, "SICC_WEB_MODEL": str(tmp_path / "model"),
           "SICC_WEB_VENDOR": str(tmp_path / "vendor"), "SICC_WEB_FILE": str(tmp_path / "kodim23.sic"),
           "SICC_WEB_EXPECTED": str(tmp_path / "kodim23.rgb"),
           "SICC_WEB_EXPECTED_SAMPLE": str(tmp_path / "kodim23-l3-s7.rgb"), "SICC_WEB_SCREENSHOT": str(tmp_path / "shot.png"),
           "SICC_WEB_CHUNK": "256", "SICC_WEB_DELAY_MS": "100"}
    run = subprocess.run(["node", "test/browser.mjs"], cwd=WEB, env=env, capture_output=True, text=True, timeout=600)
    print(run.stdout)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    if os.environ.get("SICC_UPDATE_SCREENSHOT") and model == "shipped":
        from PIL import Image

        shot = Image.open(tmp_path / "shot.png").convert("RGB")
        shot.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(REPO / "docs" / "web.png", optimize=True)


def test_export_web_writes_a_bundle_that_matches_the_runtime(tmp_path):
    """`python -m sicc.export web DIR`: a manifest with the model id and each file's SHA-256, the
    runtime's own integer tables, and a self-contained g_s graph that computes what the runtime's
    g_s computes."""
    import hashlib
    import json

    import numpy as np
    import onnxruntime as ort

    from sicc.codec import Codec

    run = subprocess.run([sys.executable, "-m", "sicc.export", "web", str(tmp_path / "model")], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    codec = Codec.default()
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    film = codec.level_film
    expected = "sicc-web-1" if film is None else ("sicc-web-3" if film.has_inner else "sicc-web-2")
    assert manifest["model_id"] == codec.model_id.hex() and manifest["format"] == expected
    for name, info in manifest["files"].items():
        data = (tmp_path / "model" / name).read_bytes()
        assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
    tables = (tmp_path / "model" / "tables.bin").read_bytes()

    def table(entry):
        dtype = {"int32": "<i4", "float64": "<f8"}[entry["dtype"]]
        count = int(np.prod(entry["shape"]))
        return np.frombuffer(tables, dtype, count, entry["offset"]).reshape(entry["shape"])

    layers = manifest["tables"]["level_layers"]
    for level in (0, 7, 15):
        assert np.array_equal(table(layers[level]["causal_w"]), codec.probability.level_layers[level].causal_w)
        assert np.array_equal(table(layers[level]["out_b"]), codec.probability.level_layers[level].out_b)
    assert np.array_equal(table(manifest["tables"]["hyper_layers"][2]["weight"]), codec.probability.hyper_layers[2].weight)
    assert np.array_equal(table(manifest["tables"]["z_frequencies"]), codec.weights.z_frequencies)
    assert np.array_equal(table(manifest["tables"]["scale_table"]), codec.weights.scale_table)
    session = ort.InferenceSession(str(tmp_path / "model" / "g_s.onnx"), providers=["CPUExecutionProvider"])
    y = np.random.default_rng(0).integers(-3, 4, (1, 128, 5, 6)).astype(np.float32)
    rows = film.inner_rows(5) if film is not None else {}  # a graph with inner tables takes a level's rows
    assert sorted(i.name for i in session.get_inputs()) == sorted(["input", *rows])
    assert np.allclose(session.run(None, {"input": y, **rows})[0], codec.transforms.g_s(y, rows), atol=1e-5)


def test_export_web_fails_in_one_line_and_keeps_the_previous_bundle(tmp_path):
    run = subprocess.run([sys.executable, "-m", "sicc.export", "web", str(tmp_path / "model")], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    before = (tmp_path / "model" / "manifest.json").read_text()
    run = subprocess.run([sys.executable, "-m", "sicc.export", "web", str(tmp_path / "model"),
                          "--vendor", str(tmp_path / "no-such-dist")], env=_env(), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    assert run.stderr.startswith("sicc.export: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert "npm ci" in run.stderr
    assert (tmp_path / "model" / "manifest.json").read_text() == before
    run = subprocess.run([sys.executable, "-m", "sicc.export", "web", str(tmp_path / "m2"), "--weights",
                          str(tmp_path / "missing.npz")], env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and run.stderr.startswith("sicc.export: error: ") and "Traceback" not in run.stderr
    assert not (tmp_path / "m2").exists()
