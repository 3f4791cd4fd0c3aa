"""The command line a cjxl user expects (issue #12), and metadata per output format and whole
sample sets under two writers (issue #13, points 4 and 6): rate at encode time, at least one
level, grayscale kept, conversion warnings, messages that name the file and hint at the right
command, Unix manners, help text, JPEG output, ``info`` metadata."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sicc
from sicc import container
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.clitools import assert_error, cli_inprocess, sicc_command, temp_files
from tests.conftest import image_with_metadata, synthetic_image
from tests.spec_parser import read_chunks, read_header


@pytest.fixture
def work(tmp_path, small_image, small_file, tiny_weights):
    Image.fromarray(small_image).save(tmp_path / "in.png")
    (tmp_path / "in.sic").write_bytes(small_file)
    return tmp_path


def run(*args, input=None, weights=None):
    extra = ["--weights", str(weights)] if weights else []
    return cli_inprocess([*map(str, args), *extra], input=input)


def process(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*sicc_command(), *map(str, args)], env=env, timeout=180, **kwargs)


# -- rate at encode time, at least one level ------------------------------------------------
def test_encode_rate_options_give_the_truncate_prefix(work, tiny_weights, tiny_codec, small_image):
    """--bpp/--bytes/--levels: the same bytes as truncating the full file (one rule), and a
    one-line summary with bytes, bpp, levels and seconds (none with -q)."""
    full = tiny_codec.encode(small_image)
    info = sicc.info(full)
    pixels = info.width * info.height
    out = work / "out.sic"
    cases = [("--bpp", info.levels[6].cumulative_bpp + 1e-6, dict(bpp=info.levels[6].cumulative_bpp + 1e-6)),
             ("--bytes", info.levels[3].cumulative_bytes + 2, dict(max_bytes=info.levels[3].cumulative_bytes + 2)),
             ("--levels", 5, dict(level=5))]
    for option, value, rule in cases:
        result = run("encode", work / "in.png", "-o", out, option, value, weights=tiny_weights)
        assert result.code == 0, result.stderr
        data = out.read_bytes()
        assert data == sicc.truncate(full, **rule), option
        levels = len(sicc.info(data).levels)
        assert re.fullmatch(rf"{out}: 100x72, {len(data)} bytes, {len(data) * 8 / pixels:.4f} bpp, "
                            rf"{levels}/16 levels, \d+\.\d\d s", result.stderr.strip()), result.stderr
    quiet = run("encode", work / "in.png", "-o", out, "--bpp", 0.5, "-q", weights=tiny_weights)
    assert quiet.code == 0 and quiet.stderr == ""
    assert_error(run("encode", work / "in.png", "-o", out, "--bpp", 0.5, "--levels", 2, weights=tiny_weights),
                 2, "at most one")


def test_api_encode_takes_the_rate(tiny_codec, small_image):
    full = tiny_codec.encode(small_image)
    info = sicc.info(full)
    budget = info.levels[8].cumulative_bytes
    assert tiny_codec.encode(small_image, max_bytes=budget) == full[:budget]
    assert tiny_codec.encode(small_image, bpp=info.levels[2].cumulative_bpp) == full[: info.levels[2].cumulative_bytes]
    with pytest.raises(ValueError, match="at most one"):
        tiny_codec.encode(small_image, bpp=0.3, levels=2)


def test_a_budget_below_level_1_is_refused_with_the_size_that_fits(work, tiny_weights, small_file):
    """encode and truncate refuse a budget below level 1 (exit 2, nothing written), naming the
    smallest size that fits; --level/--levels 0 are outside the documented range 1..16."""
    smallest = sicc.info(small_file).levels[0].cumulative_bytes
    out = work / "out.sic"
    for command in (["encode", work / "in.png"], ["truncate", work / "in.sic"]):
        assert_error(run(*command, "-o", out, "--bytes", smallest - 1, weights=tiny_weights
                         if command[0] == "encode" else None), 2, f"smallest file with level 1 is {smallest} bytes")
        assert_error(run(*command, "-o", out, "--bpp", 0.001, weights=tiny_weights
                         if command[0] == "encode" else None), 2, "smallest file with level 1")
        assert not out.exists() and temp_files(work) == []
    assert_error(run("encode", work / "in.png", "-o", out, "--levels", 0), 2, "1<=x<=16")
    assert_error(run("decode", work / "in.sic", "-o", work / "o.png", "--level", 0), 2, "1<=x<=16")
    assert run("truncate", work / "in.sic", "-o", out, "--bytes", smallest).code == 0
    assert len(sicc.info(out.read_bytes()).levels) == 1


def test_a_file_of_no_level_decodes_with_a_clear_warning(work, tiny_weights, tiny_codec, small_file):
    bare = sicc.truncate(small_file, level=0)  # the API asks for it on purpose
    with pytest.warns(sicc.NoLevelWarning, match="no level decoded"):
        tiny_codec.decode(bare)
    (work / "bare.sic").write_bytes(bare)
    result = run("decode", work / "bare.sic", "-o", work / "o.png", weights=tiny_weights)
    assert result.code == 0 and "no level decoded" in result.stderr and "noise" in result.stderr
    assert "no level" in run("info", work / "bare.sic").stdout.decode()


# -- grayscale ------------------------------------------------------------------------------
def test_grayscale_comes_back_grayscale(work, tiny_weights, tiny_codec, small_image):
    """A gray source sets header flag bit 0 (read by the independent spec parser), decodes to
    one gray channel through the API, the CLI and Pillow; a colour source keeps flags 0."""
    gray = Image.fromarray(small_image).convert("L")
    gray.save(work / "gray.png")
    result = run("encode", work / "gray.png", "-o", work / "gray.sic", weights=tiny_weights)
    assert result.code == 0, result.stderr
    data = (work / "gray.sic").read_bytes()
    assert read_header(data)["flags"] == 1 and read_header(tiny_codec.encode(small_image))["flags"] == 0
    assert sicc.info(data).grayscale and json.loads(run("info", work / "gray.sic", "--json").stdout)["grayscale"]
    assert "gray" in run("info", work / "gray.sic").stdout.decode().splitlines()[0]
    decoded = tiny_codec.decode(data, level=3, samples=2)
    assert [im.mode for im in decoded] == ["L", "L"]
    assert run("decode", work / "gray.sic", "-o", work / "g.png", weights=tiny_weights).code == 0
    with Image.open(work / "g.png") as image:
        assert image.mode == "L" and image.size == gray.size
    # the model sees the gray channel replicated to RGB: the same latents as an RGB copy
    assert data[32:] == tiny_codec.encode(np.asarray(gray.convert("RGB")))[32:]


def test_unknown_header_flags_are_refused(small_file, tiny_codec):
    from tests.fuzz import forge_header

    for flags in (0x04, 0x80, 0x07):  # bit 1 is the centred flag (issue #47)
        with pytest.raises(sicc.UnsupportedError, match="flags"):
            sicc.info(forge_header(small_file, flags=flags))
    assert tiny_codec.decode(forge_header(small_file, flags=container.FLAG_GRAYSCALE), spread=0)[0].mode == "L"


# -- conversions, messages ------------------------------------------------------------------
def _warnings_of(fn, *args, **kwargs) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return [str(w.message) for w in caught if issubclass(w.category, sicc.SiccWarning)]


def test_sixteen_bit_rgb_and_animation_warn(tiny_codec, tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    deep = tmp_path / "deep.png"
    deep.write_bytes(imagecodecs.png_encode((synthetic_image(16, 16).astype(np.uint16) * 257)))
    assert any("16-bit RGB" in m for m in _warnings_of(tiny_codec.encode, deep))
    frames = [Image.fromarray(synthetic_image(16, 16, seed=k)) for k in range(3)]
    for fmt, suffix in (("GIF", ".gif"), ("PNG", ".png"), ("WEBP", ".webp")):
        path = tmp_path / f"anim{suffix}"
        frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
        assert any(f"animated {fmt}" in m and "first of its 3 frames" in m
                   for m in _warnings_of(tiny_codec.encode, path)), fmt
    still = tmp_path / "still.png"
    frames[0].save(still)
    assert _warnings_of(tiny_codec.encode, still) == []


def test_messages_name_the_file_and_hint_at_the_command(work, tiny_weights):
    png = work / "in.png"
    assert_error(run("decode", png, "-o", work / "o.png", weights=tiny_weights), 4,
                 f"{png} is a PNG image, not a SIC file; did you mean `sicc encode`?")
    assert_error(run("info", png), 4, f"{png} is a PNG image")
    assert_error(run("truncate", png, "-o", work / "c.sic", "--level", 1), 4, "did you mean `sicc encode`")
    assert_error(run("decode", "-", "-o", work / "o.png", input=png.read_bytes(), weights=tiny_weights),
                 4, "standard input is a PNG image")
    cut = work / "cut.png"
    cut.write_bytes(png.read_bytes()[:200])
    assert_error(run("encode", cut, "-o", work / "c.sic", weights=tiny_weights), 3, f"{cut}: cannot read image")
    junk = work / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert_error(run("encode", junk, "-o", work / "c.sic", weights=tiny_weights), 3, f"{junk}: not a readable image")
    assert_error(run("info", junk), 4, f"{junk}: not a SIC file")


# -- Unix manners ---------------------------------------------------------------------------
def test_closed_pipe_ends_quietly(work):
    """`sicc info k.sic | head -1`: the reader goes away; exit 0 and nothing on stderr."""
    for args in (["info", work / "in.sic"], ["truncate", work / "in.sic", "-o", "-", "--level", 16]):
        proc = subprocess.Popen([*sicc_command(), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()  # closed before the command writes: its write meets EPIPE
        stderr = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, stderr
        assert stderr == b"", stderr
    shell = subprocess.run(f"{' '.join(sicc_command())} info {work / 'in.sic'} | head -1; exit ${{PIPESTATUS[0]}}",
                           shell=True, executable="/bin/bash", capture_output=True, timeout=120)
    assert shell.returncode == 0 and shell.stderr == b"" and shell.stdout.startswith(b"SIC v1")


def test_binary_output_to_a_terminal_is_refused(work):
    """-o - on a terminal: exit 2 and nothing written to it (as gzip and cjxl refuse)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*sicc_command(), "truncate", str(work / "in.sic"), "-o", "-", "--level", "2"],
                              stdout=follower, stderr=subprocess.PIPE, timeout=120)
        os.close(follower)
        follower = -1
        assert proc.returncode == 2 and proc.stderr.decode().startswith("sicc: error: refusing to write binary")
        os.set_blocking(leader, False)
        try:
            written = os.read(leader, 1024)
        except (BlockingIOError, OSError):
            written = b""
        assert written == b""
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)


# -- help, version, verbosity ---------------------------------------------------------------
def test_help_shows_real_ranges_and_only_the_options_a_command_uses():
    top = run("--help").stdout.decode()
    assert "..." not in top.split("Commands:")[1] and "-V, --version" in top
    for command in ("info", "truncate"):
        text = run(command, "--help").stdout.decode()
        assert "--weights" not in text and "--threads" not in text, command
    decode = run("decode", "--help").stdout.decode()
    assert "9223372036854775807" not in decode and "0<=x<2^63" in decode
    assert "0<=x<=255" not in decode and "1<=x<=16" in decode and "--weights" in decode
    assert "1<=x<=16" in run("encode", "--help").stdout.decode()
    version = run("-V")
    assert version.code == 0 and sicc.__version__ in version.stdout.decode()


def test_verbosity_levels(work, tiny_weights):
    out = work / "out.sic"
    default = run("encode", work / "in.png", "-o", out, weights=tiny_weights).stderr_lines
    once = run("encode", work / "in.png", "-o", out, "-v", weights=tiny_weights).stderr_lines
    twice = run("encode", work / "in.png", "-o", out, "-vv", weights=tiny_weights).stderr_lines
    assert len(default) == 1 and len(once) == 2 and once[0].startswith("model ")
    assert len(twice) == 2 + 16 and twice[-1].startswith("  level 16:")


# -- outputs --------------------------------------------------------------------------------
def test_decode_writes_jpeg_with_quality(work, tiny_weights, tiny_codec, small_file):
    sizes = {}
    for quality in (20, 95):
        out = work / f"q{quality}.jpg"
        result = run("decode", work / "in.sic", "-o", out, "--quality", quality, "--spread", 0, weights=tiny_weights)
        assert result.code == 0, result.stderr
        with Image.open(out) as image:
            assert image.format == "JPEG" and image.size == (100, 72)
            error = np.abs(np.asarray(image, np.int16) - np.asarray(tiny_codec.decode(small_file, spread=0)[0], np.int16))
        sizes[quality] = out.stat().st_size
        assert error.mean() < 8, quality
    assert sizes[20] < sizes[95]
    assert_error(run("decode", work / "in.sic", "-o", work / "o.png", "--quality", 50, weights=tiny_weights),
                 2, "--quality applies to JPEG")


def test_info_shows_icc_and_exif(work, tiny_codec):
    data = tiny_codec.encode(image_with_metadata(40, 48, 2, "info test", b"fake icc profile"))
    (work / "meta.sic").write_bytes(data)
    text = run("info", work / "meta.sic").stdout.decode()
    assert "metadata: ICC profile, EXIF" in text
    assert "metadata: none" in run("info", work / "in.sic").stdout.decode()
    report = json.loads(run("info", work / "meta.sic", "--json").stdout)
    assert report["has_icc_profile"] and report["has_exif"]


def test_samples_of_a_complete_file_warn_that_they_are_identical(work, tiny_weights, tiny_codec, small_file):
    with pytest.warns(sicc.SiccWarning, match="all 3 samples are identical"):
        tiny_codec.decode(small_file, samples=3)
    result = run("decode", work / "in.sic", "-o", work / "o.png", "--samples", 2, weights=tiny_weights)
    assert result.code == 0 and "all 2 samples are identical" in result.stderr
    cut = sicc.truncate(small_file, level=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sicc.SiccWarning)
        tiny_codec.decode(cut, samples=3)  # a cut file's samples differ: no warning


# -- metadata valid for the output format (issue #13, point 4) ------------------------------
def _with_exif(data: bytes, exif: bytes) -> bytes:
    """``data`` (a file without metadata) with an EXIF chunk of ``exif`` (a valid CRC)."""
    parsed = container.parse(data)
    return container.write(parsed.header, parsed.hyper, parsed.levels, icc_profile=None, exif=exif)


def test_damaged_or_hostile_exif_never_breaks_an_output(work, tiny_weights, small_file):
    """A damaged EXIF chunk decoded to .tif/.jpg/.png/.webp: exit 0, a warning naming the output,
    EXIF dropped; an EXIF that describes other pixels (ImageWidth) still gives a valid TIFF."""
    damaged = work / "damaged.sic"
    damaged.write_bytes(_with_exif(small_file, b"II*\x00\x08\x00\x00\x00\x05\x00garbage"))
    assert read_chunks(damaged.read_bytes())[0].kind == "EXIF"
    for suffix in (".tif", ".jpg", ".png", ".webp"):
        out = work / f"d{suffix}"
        result = run("decode", damaged, "-o", out, weights=tiny_weights)
        assert result.code == 0, (suffix, result.stderr)
        assert f"{out}: EXIF dropped: it is damaged" in result.stderr, result.stderr
        with Image.open(out) as image:
            image.load()
            assert image.size == (100, 72) and (suffix == ".tif" or not image.getexif())
    exif = Image.Exif()
    exif[0x0100] = 5  # ImageWidth: Pillow's TIFF writer failed with "codec configuration error"
    exif[0x010F] = "sicc camera"
    hostile = work / "hostile.sic"
    hostile.write_bytes(_with_exif(small_file, exif.tobytes()))
    for suffix in (".tif", ".jpg", ".png", ".webp"):
        out = work / f"h{suffix}"
        result = run("decode", hostile, "-o", out, weights=tiny_weights)
        assert result.code == 0 and "warning" not in result.stderr, (suffix, result.stderr)
        with Image.open(out) as image:
            image.load()
            assert image.size == (100, 72) and image.getexif().get(0x010F) == "sicc camera", suffix
    result = run("decode", hostile, "-o", work / "h.ppm", weights=tiny_weights)
    assert result.code == 0 and "PPM cannot hold the EXIF" in result.stderr


# -- whole sample sets under two writers (issue #13, point 6) -------------------------------
def test_a_sample_set_waits_for_the_lock_and_lands_whole(work, tiny_weights, tiny_codec, small_file):
    """While another writer holds the set's lock, a decode stages its files but renames none; on
    release the whole set appears at once. Two concurrent writers leave one whole set."""
    out = work / "s.png"
    lock = os.open(work, os.O_RDONLY | os.O_DIRECTORY)  # the lock a set writer takes: its folder
    fcntl.flock(lock, fcntl.LOCK_EX)
    args = [*sicc_command(), "decode", str(work / "in.sic"), "-o", str(out), "--samples", 3, "--level", 2,
            "--weights", str(tiny_weights)]
    proc = subprocess.Popen(list(map(str, args)), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(temp_files(work)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(temp_files(work)) == 3, proc.stderr.read() if proc.poll() is not None else "no staging"
        time.sleep(0.3)
        assert sorted(p.name for p in work.glob("s-*.png")) == []  # staged, waiting for the lock
    finally:
        os.close(lock)  # releases the lock
    assert proc.wait(timeout=120) == 0
    assert sorted(p.name for p in work.glob("s-*.png")) == ["s-0.png", "s-1.png", "s-2.png"]
    assert temp_files(work) == []
    sets = {seed: [np.asarray(im) for im in tiny_codec.decode(small_file, samples=3, level=2, seed=seed)]
            for seed in (1, 2)}
    procs = [subprocess.Popen(list(map(str, [*args, "--seed", seed]))) for seed in (1, 2)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    got = [np.asarray(Image.open(work / f"s-{k}.png")) for k in range(3)]
    assert any(all(np.array_equal(g, w) for g, w in zip(got, want)) for want in sets.values())


# -- first steps ----------------------------------------------------------------------------
def test_encoding_a_sic_file_points_at_truncate(work, tiny_weights):
    """A .sic given to encode (Pillow's plugin could open it) is refused with the command meant."""
    assert_error(run("encode", work / "in.sic", "-o", work / "again.sic", weights=tiny_weights), 2,
                 f"{work / 'in.sic'} is already a SIC file; `sicc truncate`")
    assert not (work / "again.sic").exists()


def test_every_cut_or_flip_of_an_exif_block_still_writes_every_format():
    """Each prefix of a valid EXIF block and random byte flips of it, written as PNG, JPEG, WebP and
    TIFF: always a readable image, never an exception; the whole block is kept (not dropped)."""
    import random

    from sicc.fileio import image_bytes

    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0100] = "sicc camera", "model", 5
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 00:00:00"
    block = exif.tobytes()
    rng = random.Random(7)
    flipped = []
    for _ in range(40):
        data = bytearray(block)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        flipped.append(bytes(data))
    image = Image.fromarray(synthetic_image(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for raw in [block[:n] for n in range(len(block) + 1)] + flipped:
            image.info["exif"] = raw
            for fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
                with Image.open(io.BytesIO(image_bytes(image, fmt))) as written:
                    written.load()
                    assert written.size == (8, 8)
        image.info["exif"] = block
        with Image.open(io.BytesIO(image_bytes(image, "JPEG"))) as written:
            assert written.getexif()[0x010F] == "sicc camera"
