"""What a new user tripped on (issue #47, papercuts): the package namespace, errors that name the
file and are SiccErrors, a budget below level 1, SIC data under an image name, the JSON summary,
the API refusing a SIC input, warning and help texts, output sizes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import container
from tests.clitools import REPO, assert_error, cli_inprocess
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)


def run(*args, weights=None):
    extra = ["--weights", str(weights)] if weights else []
    return cli_inprocess([*map(str, args), *extra])


def test_sicc_montage_stays_callable_after_a_call(tmp_path):
    """The function was replaced by its submodule on first use: a fresh process calls it twice."""
    script = (
        "import numpy as np, sicc\n"
        "data = sicc.encode(np.full((32, 48, 3), 90, np.uint8))\n"
        "for _ in range(2):\n"
        "    sheet = sicc.montage(data, levels=[1, 16], samples=1)\n"
        "print(sheet.size)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert callable(sicc.montage) and sicc.montage.__module__ == "sicc"


def test_errors_a_file_cannot_satisfy_are_sicc_errors_and_value_errors(small_file):
    with pytest.raises(sicc.SiccError, match="cannot fit in 10 bytes") as caught:
        sicc.truncate(small_file, max_bytes=10)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, sicc.BudgetError)
    assert caught.value.smallest == container.parse(small_file).chunk_ends[1]
    with pytest.raises(sicc.ArgumentError, match=r"level 9 is not in the file \(it holds levels 1..4\)"):
        sicc.truncate(sicc.truncate(small_file, level=4), level=9)


def test_batch_errors_name_their_file(tmp_path, tiny_weights, small_image, small_file):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(small_image).save(folder / f"{name}.png")
    result = run("encode", folder, "-o", tmp_path / "out", "--bytes", 10, weights=tiny_weights)
    assert result.code == 2
    errors = [line for line in result.stderr_lines if line.startswith("sicc: error:")]
    assert [line.split(": ")[2] for line in errors] == [str(folder / "a.png"), str(folder / "b.png")]
    assert all("cannot fit in 10 bytes" in line for line in errors)
    short = tmp_path / "short"
    short.mkdir()
    (short / "s.sic").write_bytes(sicc.truncate(small_file, level=4))
    result = run("decode", short, "-o", tmp_path / "png", "--level", 8, weights=tiny_weights)
    assert result.code == 2 and f"{short / 's.sic'}: level 8 is not in the file (it holds levels 1..4)" in result.stderr


def test_at_least_one_keeps_level_1_with_a_warning(tmp_path, tiny_weights, small_image, small_file):
    source = tmp_path / "in.png"
    Image.fromarray(small_image).save(source)
    out = tmp_path / "out.sic"
    assert_error(run("encode", source, "-o", out, "--bytes", 10, weights=tiny_weights), 2, "cannot fit in 10 bytes")
    result = run("encode", source, "-o", out, "--bytes", 10, "--at-least-one", weights=tiny_weights)
    assert result.code == 0, result.stderr
    assert "warning" in result.stderr and "over the budget of 10 bytes" in result.stderr and "kept level 1" in result.stderr
    assert len(container.parse(out.read_bytes()).levels) == 1
    (tmp_path / "in.sic").write_bytes(small_file)
    result = run("truncate", tmp_path / "in.sic", "-o", tmp_path / "t.sic", "--bpp", 0.001, "--at-least-one")
    assert result.code == 0 and "kept level 1" in result.stderr
    assert (tmp_path / "t.sic").read_bytes() == sicc.truncate(small_file, level=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sicc.truncate(small_file, max_bytes=10, at_least_one=True) == sicc.truncate(small_file, level=1)
    assert any(issubclass(w.category, sicc.SiccWarning) for w in caught)


def test_sic_data_under_an_image_name_warns(tmp_path, tiny_weights, small_image):
    source = tmp_path / "in.png"
    Image.fromarray(small_image).save(source)
    result = run("encode", source, "-o", tmp_path / "x.png", weights=tiny_weights)
    assert result.code == 0
    assert "SIC data written under a .png name" in result.stderr and "-o x.sic" in result.stderr
    assert (tmp_path / "x.png").read_bytes().startswith(container.MAGIC)
    result = run("encode", source, "-o", tmp_path / "x.sic", weights=tiny_weights)
    assert "warning" not in result.stderr


def test_encode_json_summary(tmp_path, tiny_weights, small_image):
    source = tmp_path / "in.png"
    Image.fromarray(small_image).save(source)
    result = run("encode", source, "-o", tmp_path / "x.sic", "--json", "--levels", 3, weights=tiny_weights)
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    data = (tmp_path / "x.sic").read_bytes()
    assert summary["bytes"] == len(data) and summary["levels"] == 3 and summary["width"] == 100
    assert summary["output"] == str(tmp_path / "x.sic") and summary["bpp"] == pytest.approx(len(data) * 8 / 7200)
    Image.fromarray(small_image).save(tmp_path / "in2.png")
    folder = run("encode", source, tmp_path / "in2.png", "-o", tmp_path / "many", "--json", weights=tiny_weights)
    assert folder.code == 0
    lines = [json.loads(line) for line in folder.stdout.decode().splitlines()]
    assert sorted(x["input"] for x in lines) == [str(source), str(tmp_path / "in2.png")]
    assert_error(run("encode", source, "-o", "-", "--json", weights=tiny_weights), 2, "--json")


def test_the_api_refuses_to_re_encode_a_sic_file(tmp_path, small_file):
    path = tmp_path / "x.sic"
    path.write_bytes(small_file)
    with pytest.raises(sicc.SiccError, match="already a SIC file"):
        sicc.encode(str(path))
    with pytest.raises(sicc.InputImageError, match="already a SIC file"):
        sicc.encode(path)


def test_sixteen_bit_gray_warning_says_gray(tiny_codec):
    image = Image.fromarray(np.full((16, 16), 30000, np.uint16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_codec.encode(image)
    texts = [str(w.message) for w in caught if issubclass(w.category, sicc.SiccWarning)]
    assert texts == ["16-bit gray image reduced to 8-bit gray"]


def test_help_texts():
    encode = run("encode", "--help").stdout.decode()
    assert all(fmt in encode for fmt in ("GIF", "BMP", "PPM", "PNG", "JPEG", "WebP", "TIFF")), encode
    assert "several inputs" in encode
    for command in ("truncate", "info", "montage"):
        text = run(command, "--help").stdout.decode()
        assert "several inputs" not in text and "Exit codes" in text, command


def test_decode_and_truncate_report_the_size_written(tmp_path, tiny_weights, small_file):
    (tmp_path / "in.sic").write_bytes(small_file)
    result = run("decode", tmp_path / "in.sic", "-o", tmp_path / "o.png", "-v", weights=tiny_weights)
    size = (tmp_path / "o.png").stat().st_size
    assert result.code == 0 and f"{size} bytes written" in result.stderr
    result = run("truncate", tmp_path / "in.sic", "-o", tmp_path / "t.sic", "--level", 2, "-v")
    assert f"{(tmp_path / 't.sic').stat().st_size} bytes" in result.stderr


def test_readme_example_writes_nothing_into_the_clone():
    """The quick-start lines write into a temporary folder (or a .gitignored name)."""
    readme = (REPO / "README.md").read_text()
    assert "sicc encode examples/kodim23.png -o a.sic" not in readme
    assert "cd \"$(mktemp -d)\"" in readme or "/tmp/" in readme.split("## Install", 1)[1].split("##", 1)[0]
