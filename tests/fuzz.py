"""Fuzzing of the SIC container parser and the decoder with mutations of real files.

    python -m tests.fuzz --seconds 1800          # what `make fuzz` runs
    python -m tests.fuzz --seconds 60 --seed 3 --out /tmp/crashes

Real files are made with a tiny untrained model (or, with ``--weights shipped``,
the shipped model), then mutated: bit flips, byte overwrites, truncations,
forged chunk lengths, forged header fields with the header CRC recomputed (so
the forgery reaches the checks behind it), chunk payloads rewritten with a
valid CRC (so they reach the range decoder), chunks reordered, duplicated,
dropped and spliced between files. Each input goes through ``sicc.info``,
``sicc.truncate`` and ``Codec.decode``, and then through the command's writers
as a user runs them (``sicc info``, ``sicc truncate -o``, ``sicc decode -o``,
the console entry point in the worker process): exit 0 or 4 only, one
``sicc: error:`` line on failure, outputs written whole (the same pixels and
bytes as the API) or not at all, no temporary file left. One input in eight is
a mutated PNG through ``sicc encode -o`` instead (exit 0 or 3, the same rules);
the images include EXIF blocks with mistyped tags (Orientation as ASCII,
StripOffsets near 2^32), and so do SIC seed files. One input in ten is a
mutated weights file (a config field, the scale offset, a graph's bytes or ops,
a tensor; mostly made self-consistent again, model id included, as a forger
would): loading it gives a codec or a WeightsError, the codec encodes and
decodes or raises a SiccError, and ``sicc encode --weights`` exits 0 or 4. For
one input in six the commands run as whole ``sicc`` processes (``--threads 2``
where the model runs), so exit codes, aborts at exit and deaths by signal are
seen too.

It needs the dev extras (``pip install -e ".[dev]"``: pytest for the test
helpers, torch and onnx to make the tiny model) and is run from the
repository root: ``python -m tests.fuzz`` or ``make fuzz``.

Acceptable outcomes are success (possibly with a :class:`sicc.SiccWarning`) or
a :class:`sicc.SiccError`. Anything else is a crash: another exception type, a
broken invariant (a truncation that is not a prefix, an image of the wrong
size), a warning of another kind, an input that runs longer than
``--hang-seconds``, or one that allocates past the worker's memory cap.

Inputs run in a worker process with an address-space limit (RLIMIT_AS); the
parent watches it, so a hang or a hard crash (segfault, out of memory) is
caught as well as an exception. Crashing inputs are saved as files (default
tests/regressions/), which ``tests/test_fuzz.py`` replays on every test run.

Decoding uses ``max_pixels`` = 65536 by default: a forged header may declare
any size up to that limit, and the range decoder happily decodes a near-empty
payload into that many symbols, so the limit is what bounds the work (exactly
as ``sicc.MAX_IMAGE_PIXELS`` does for users).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
FUZZ_MAX_PIXELS = 1 << 16
HANG_SECONDS = 10.0
MEMORY_CAP = 1536 << 20  # bytes of address space a worker may add after start-up

HEADER_SIZE = 32
_CHUNK_HEAD = struct.Struct("<4sI")
# header fields: (name, offset, struct format)
HEADER_FIELDS = (("version", 8, "<B"), ("flags", 9, "<B"), ("levels", 10, "<B"), ("reserved", 11, "<B"),
                 ("width", 12, "<I"), ("height", 16, "<I"), ("model_id", 20, "<Q"))


# -- seed files ------------------------------------------------------------------------
def make_tiny_weights(path: Path) -> Path:
    """The same tiny untrained model as tests/conftest.py's ``tiny_weights`` (seed 0)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.conftest import make_tiny_weights as make

    return make(Path(path))


def file_with_symbols(codec, height: int, width: int, seed: int = 0, **encode_options) -> bytes:
    """A real file whose latents are random integers. The tiny untrained model analyses every
    image to all-zero latents, which would leave the range decoder a trivial job."""
    import copy

    import numpy as np

    from sicc.coding import Y_BOUND
    from sicc.model.geometry import centres, hyper_size, latent_size
    from sicc.model.probability import Z_BOUND
    from tests.conftest import synthetic_image

    rng = np.random.default_rng(seed)
    centred = centres(height, width)  # the canvas the encoder will use (small images: centred)
    z = rng.normal(0, 3, (codec.weights.z_frequencies.shape[0], *hyper_size(height, width, centred)))
    y = rng.normal(0, 6, (codec.config.latent, *latent_size(height, width, centred)))
    latents = (np.clip(np.round(z), -Z_BOUND, Z_BOUND).astype(np.int32),
               np.clip(np.round(y), -Y_BOUND, Y_BOUND).astype(np.int16))
    forger = copy.copy(codec)
    forger.analyse = lambda pixels, *args, **kwargs: latents
    return forger.encode(synthetic_image(height, width, seed), **encode_options)


def seed_files(codec) -> list[bytes]:
    """Real files: several sizes, with and without ICC/EXIF chunks, whole, cut, level-free,
    and one with non-zero symbols in every level."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.conftest import image_with_metadata, synthetic_image

    plain = codec.encode(synthetic_image(64, 64, seed=1))
    with_metadata = codec.encode(image_with_metadata(
        72, 100, seed=2, note="fuzz seed", icc=b"not really an ICC profile, but carried verbatim" * 3))
    tiny = codec.encode(synthetic_image(1, 5, seed=3), levels=3)
    no_levels = codec.encode(synthetic_image(40, 30, seed=4), levels=0)
    with_symbols = file_with_symbols(codec, 48, 80, seed=5)
    from sicc import container

    parsed = container.parse(plain)
    mistyped = [container.write(parsed.header, parsed.hyper, parsed.levels, exif=block)
                for block in MISTYPED_EXIF.values()]
    return [plain, with_metadata, tiny, no_levels, with_symbols, *mistyped]


# -- structure helpers -----------------------------------------------------------------
@dataclass(frozen=True)
class Chunk:
    start: int
    kind: bytes
    length: int
    end: int  # offset after the CRC

    @property
    def payload(self) -> slice:
        return slice(self.start + 8, self.end - 4)


def walk_chunks(data: bytes) -> list[Chunk]:
    """The chunks of a (possibly damaged) file, as far as their lengths fit."""
    chunks, pos = [], HEADER_SIZE
    while pos + 12 <= len(data):
        kind, length = _CHUNK_HEAD.unpack_from(data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        chunks.append(Chunk(pos, kind, length, end))
        pos = end
    return chunks


def make_chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(payload)) + payload + struct.pack("<I", zlib.crc32(kind + payload))


def fix_header_crc(data: bytes | bytearray) -> bytes:
    """Recompute the header CRC so that a forged field passes the checksum."""
    if len(data) < HEADER_SIZE:
        return bytes(data)
    out = bytearray(data)
    out[28:32] = struct.pack("<I", zlib.crc32(bytes(out[:28])))
    return bytes(out)


def forge_header(data: bytes, **fields: int) -> bytes:
    """``data`` with header fields replaced (version, flags, levels, reserved, width, height,
    model_id) and the header CRC recomputed."""
    out = bytearray(data)
    offsets = {name: (offset, fmt) for name, offset, fmt in HEADER_FIELDS}
    for name, value in fields.items():
        offset, fmt = offsets[name]
        struct.pack_into(fmt, out, offset, value)
    return fix_header_crc(out)


# -- mutators --------------------------------------------------------------------------
def _interesting(rng: random.Random, original: int, bits: int) -> int:
    top = (1 << bits) - 1
    choices = [0, 1, 2, 3, 4, 15, 16, 17, 63, 64, 65, 255, 256, 1 << 15, (1 << 16) - 1, 1 << 16, 1 << 20,
               (1 << 20) + 1, 1 << 31, top, top - 1, original - 1, original + 1, original * 2, original // 2,
               original + 4, original - 4, rng.randrange(top + 1)]
    return rng.choice(choices) & top


def m_bitflip(rng, data, corpus):
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_bytes(rng, data, corpus):
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if out:
            out[rng.randrange(len(out))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(out)


def m_truncate(rng, data, corpus):
    chunks = walk_chunks(data)
    if chunks and rng.random() < 0.5:
        cut = rng.choice(chunks).end + rng.randint(-13, 13)
    else:
        cut = rng.randrange(len(data) + 1)
    return data[: max(cut, 0)]


def m_insert_delete(rng, data, corpus):
    pos = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[pos:]
    return data[:pos] + data[pos + rng.randint(1, 16):]


def m_chunk_length(rng, data, corpus):
    """A forged length field (CRC not fixed): too long, too short, absurd."""
    chunks = walk_chunks(data)
    if not chunks:
        return m_bitflip(rng, data, corpus)
    chunk = rng.choice(chunks)
    remaining = len(data) - chunk.start - 12
    value = rng.choice([_interesting(rng, chunk.length, 32), remaining, remaining + 1, remaining - 1,
                        0xFFFFFFFF, 0xFFFFFFF4, 1 << 31])
    out = bytearray(data)
    struct.pack_into("<I", out, chunk.start + 4, value & 0xFFFFFFFF)
    return bytes(out)


def m_header_field(rng, data, corpus):
    """A forged header field with a valid header CRC."""
    if len(data) < HEADER_SIZE:
        return data
    name, offset, fmt = rng.choice(HEADER_FIELDS)
    (original,) = struct.unpack_from(fmt, data, offset)
    value = _interesting(rng, original, struct.calcsize(fmt) * 8)
    if name in ("width", "height") and rng.random() < 0.5:  # plausible sizes near the real one
        value = max(0, original + rng.randint(-70, 70))
    return forge_header(data, **{name: value})


def m_header_bytes(rng, data, corpus):
    """Random header bytes, CRC recomputed (or not)."""
    out = bytearray(m_bytes(rng, data[:HEADER_SIZE], corpus) + data[HEADER_SIZE:])
    return fix_header_crc(out) if rng.random() < 0.8 else bytes(out)


def m_payload(rng, data, corpus):
    """A chunk payload changed and its length and CRC recomputed: reaches the range decoder."""
    chunks = walk_chunks(data)
    if not chunks:
        return m_bitflip(rng, data, corpus)
    chunk = rng.choice(chunks)
    payload = bytearray(data[chunk.payload])
    action = rng.randrange(6)
    if action == 0 and payload:
        payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
    elif action == 1:
        payload = payload[: rng.randrange(len(payload) + 1)]
    elif action == 2:
        payload += bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 3, 4, 8, 64])))
    elif action == 3 and chunk.kind == b"LEVL" and payload:
        payload[0] = rng.choice([0, payload[0] - 1, payload[0] + 1, 255, rng.randrange(256)]) & 0xFF
    elif action == 4:
        payload = bytearray(rng.randrange(256) for _ in range(len(payload)))
    else:
        payload = bytearray(b"\xff" * len(payload) if rng.random() < 0.5 else b"\x00" * len(payload))
    kind = chunk.kind if rng.random() < 0.9 else rng.choice([b"LEVL", b"HYPR", b"ICCP", b"EXIF", b"XXXX"])
    return data[: chunk.start] + make_chunk(kind, bytes(payload)) + data[chunk.end:]


def m_reorder(rng, data, corpus):
    """Chunks swapped, duplicated, dropped or taken from another file."""
    chunks = walk_chunks(data)
    if len(chunks) < 2:
        return m_truncate(rng, data, corpus)
    tail = data[chunks[-1].end:]
    parts = [data[c.start : c.end] for c in chunks]
    action = rng.randrange(4)
    i, j = rng.randrange(len(parts)), rng.randrange(len(parts))
    if action == 0:
        parts[i], parts[j] = parts[j], parts[i]
    elif action == 1:
        parts.insert(j, parts[i])
    elif action == 2:
        del parts[i]
    else:
        other = walk_chunks(donor := rng.choice(corpus))
        if other:
            c = rng.choice(other)
            parts.insert(j, donor[c.start : c.end])
    return data[:HEADER_SIZE] + b"".join(parts) + tail


def m_splice(rng, data, corpus):
    """The head of one file with the tail of another, cut at chunk boundaries."""
    donor = rng.choice(corpus)
    a, b = walk_chunks(data), walk_chunks(donor)
    cut_a = rng.choice(a).end if a else HEADER_SIZE
    cut_b = rng.choice(b).start if b else HEADER_SIZE
    return data[:cut_a] + donor[cut_b:]


def m_garbage(rng, data, corpus):
    choice = rng.randrange(4)
    if choice == 0:
        return b""
    if choice == 1:
        return data[: rng.randint(1, 8)]
    if choice == 2:
        return data[:HEADER_SIZE] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


MUTATORS = (m_bitflip, m_bytes, m_truncate, m_insert_delete, m_chunk_length, m_header_field,
            m_header_bytes, m_payload, m_payload, m_reorder, m_splice, m_garbage)


def mutate(rng: random.Random, corpus: list[bytes]) -> bytes:
    data = rng.choice(corpus)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = rng.choice(MUTATORS)(rng, data, corpus)
    return data


# -- running one input -----------------------------------------------------------------
class Crash(Exception):
    """An outcome that is neither success nor a SiccError."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def normalize(message: str) -> str:
    """An error message with its numbers and byte strings blanked, for counting distinct ones."""
    message = re.sub(r"b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"", "b'…'", message)
    message = re.sub(r"\b[0-9a-f]{16}\b", "<id>", message)
    message = re.sub(r"flags 0x[0-9a-f]+/0x[0-9a-f]+", "flags <hex>/<hex>", message)
    message = re.sub(r"(^|the )(?!ICCP|EXIF|HYPR|LEVL)(\S{4}|b'…') chunk", r"\1<type> chunk", message)
    return re.sub(r"\d+", "N", message)


def _last_frames(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))


def _check_message(what: str, problem) -> None:
    """Errors and warnings reach terminals: one printable line, no control characters."""
    text = str(problem)
    if not text or not text.isprintable():
        raise Crash("message", f"{what}: {type(problem).__name__} message is not one printable line: {text!r}")


def exercise(codec, data: bytes, max_pixels: int | None = FUZZ_MAX_PIXELS,
             cli: tuple[Path, Path] | None = None) -> list[str]:
    """Run ``data`` through info, truncate and decode; return the normalized SiccError messages
    and warnings met. Raises :class:`Crash` for anything that is not acceptable. With ``cli`` =
    (weights file of ``codec``, an empty work folder), the same calls run through the command
    line too (:func:`exercise_cli`)."""
    import sicc

    rng = random.Random(zlib.crc32(data))  # choices follow from the input: a saved crash replays
    seen: list[str] = []

    def call(what, fn, *args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except sicc.SiccError as exc:
                _check_message(what, exc)
                seen.append(f"{type(exc).__name__}: {normalize(str(exc))}")
                return exc
            except Crash:
                raise
            except BaseException as exc:  # noqa: BLE001 - everything else is the bug we look for
                if isinstance(exc, KeyboardInterrupt):
                    raise
                kind = "memory" if isinstance(exc, MemoryError) or "allocate" in str(exc) else "exception"
                raise Crash(kind, f"{what}: {type(exc).__name__}: {exc} [{_last_frames(exc)}]") from None
        for w in caught:
            if not issubclass(w.category, sicc.SiccWarning):
                raise Crash("warning", f"{what}: {w.category.__name__}: {w.message}")
            _check_message(what, w.message)
            seen.append(f"{w.category.__name__}: {normalize(str(w.message))}")
        return result

    info = call("info", sicc.info, data)
    if isinstance(info, sicc.SiccError):
        cut = call("truncate", sicc.truncate, data, level=0)
        if not isinstance(cut, sicc.SiccError):
            raise Crash("property", "truncate accepted a file that info rejects")
    else:
        count = len(info.levels)
        k = rng.randint(0, count)
        cut = call("truncate", sicc.truncate, data, level=k)
        if isinstance(cut, sicc.SiccError) or not data.startswith(cut) or len(sicc.info(cut).levels) != k:
            raise Crash("property", f"truncate(level={k}) of a file with {count} levels is not a {k}-level prefix")
        smallest = info.levels[0].cumulative_bytes if info.levels else info.base_bytes  # a budget keeps level 1
        budget = rng.randint(smallest, len(data) + 16)
        cut = call("truncate", sicc.truncate, data, max_bytes=budget)
        if isinstance(cut, sicc.SiccError) or len(cut) > budget or not data.startswith(cut):
            raise Crash("property", f"truncate(max_bytes={budget}) is not a prefix within the budget")

    strict = rng.random() < 0.25
    level = None if strict or info is None or isinstance(info, sicc.SiccError) or rng.random() < 0.5 \
        else rng.randint(0, len(info.levels))
    spread = rng.choice((0.0, 2.0))
    options = dict(samples=rng.choice((1, 1, 2)), seed=rng.randrange(1 << 31), spread=spread, level=level,
                   strict=strict)
    images = call("decode", codec.decode, data, max_pixels=max_pixels, **options)
    if not isinstance(images, sicc.SiccError):
        if isinstance(info, sicc.SiccError):
            raise Crash("property", "decode accepted a file that info rejects")
        mode = "L" if info.grayscale else "RGB"
        if any(im.size != (info.width, info.height) or im.mode != mode for im in images):
            raise Crash("property", f"decoded size {images[0].size} differs from the header's "
                                    f"{info.width}x{info.height}")
    if cli is not None:
        exercise_cli(*cli, data, info, images, options, max_pixels)
    return seen


# -- the command's writers ---------------------------------------------------------------
PROCESS_SHARE = 1 / 6
"""Share of the inputs whose commands run as whole ``sicc`` processes (``python -m sicc.cli``, with
``--threads 2`` on the commands that run the model), so that exit codes, aborts at exit (134) and
deaths by signal are seen; the rest run the console entry point in the worker, which is faster."""


def _run_cli(what: str, args: list, workdir: Path, ok_codes: tuple[int, ...], outputs: list[Path],
             process: bool = False):
    """``sicc ARGS`` through the console entry point (``process``: in a fresh ``sicc`` process); a
    Crash unless it exits with one of ``ok_codes``, prints only ``sicc: error:``/``sicc: warning:``
    lines (one error line exactly when it fails), writes its outputs only on success, and leaves no
    temporary file."""
    from tests.clitools import CliResult, cli_inprocess

    if process:
        args = [*args, "--threads", "2"] if "--weights" in args else args
        try:
            done = subprocess.run([sys.executable, "-m", "sicc.cli", *map(str, args)], cwd=workdir, capture_output=True,
                                  timeout=HANG_SECONDS * 3, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                                 "PYTHONPATH": str(REPO)})
        except subprocess.TimeoutExpired:
            raise Crash("hang", f"{what}: the sicc process ran for more than {HANG_SECONDS * 3:.0f} s") from None
        result = CliResult(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))
        if result.code < 0 or result.code == 134:
            raise Crash("abort", f"{what}: the sicc process died (exit {result.code}): {result.stderr[-300:]!r}")
    else:
        result = cli_inprocess([str(a) for a in args], cwd=workdir)
    lines = result.stderr_lines
    errors = [line for line in lines if line.startswith("sicc: error: ")]
    if "Traceback" in result.stderr or any(not line.startswith(("sicc: error: ", "sicc: warning: "))
                                           for line in lines):
        raise Crash("cli", f"{what}: stderr is not sicc's one-line messages: {result.stderr[-300:]!r}")
    if result.code not in ok_codes:
        raise Crash("cli", f"{what}: exit {result.code} (expected {ok_codes}): {result.stderr[-300:]!r}")
    if (result.code == 0) != (not errors) or len(errors) > 1:
        raise Crash("cli", f"{what}: exit {result.code} with {len(errors)} error line(s)")
    leftovers = [p.name for p in workdir.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]
    if leftovers:
        raise Crash("cli", f"{what}: temporary files left behind: {leftovers}")
    if result.code != 0 and any(p.exists() for p in outputs):
        raise Crash("cli", f"{what}: failed (exit {result.code}) but wrote {[p.name for p in outputs if p.exists()]}")
    return result


def _clear(folder: Path) -> None:
    for entry in folder.iterdir():
        entry.unlink()


def exercise_cli(weights: Path, workdir: Path, data: bytes, info, images, options: dict,
                 max_pixels: int | None) -> None:
    """``sicc info``, ``truncate`` and ``decode`` on ``data``: each agrees with the API result
    (``info``, ``images``: a value or the SiccError raised) and writes whole outputs or none."""
    import numpy as np
    from PIL import Image

    import sicc

    _clear(workdir)
    source = workdir / "in.sic"
    source.write_bytes(data)
    process = random.Random(zlib.crc32(data) ^ 0x5EED).random() < PROCESS_SHARE
    failed = isinstance(info, sicc.SiccError)
    damaged = not failed and info.corrupt_level is not None  # the report, then exit 4 naming the level
    result = _run_cli("sicc info", ["info", source, "--json"], workdir, (4,) if failed or damaged else (0,), [],
                      process)
    if not failed and json.loads(result.stdout)["levels"] != [vars(lv) for lv in info.levels]:
        raise Crash("cli", "sicc info --json differs from sicc.info")
    if not failed and info.levels:
        k = 1 + zlib.crc32(data) % len(info.levels)
        cut = workdir / "cut.sic"
        _run_cli("sicc truncate", ["truncate", "-q", source, "-o", cut, "--level", k], workdir, (0,), [cut], process)
        if cut.read_bytes() != sicc.truncate(data, level=k):
            raise Crash("cli", f"sicc truncate --level {k} differs from sicc.truncate")
        cut.unlink()
    if options["level"] == 0:  # the command takes levels 1..L; the API's level 0 has no twin
        return
    out = workdir / "out.png"
    args = ["decode", "-q", source, "-o", out, "--weights", weights, "--samples", options["samples"],
            "--seed", options["seed"], "--spread", options["spread"]]
    args += ["--level", options["level"]] if options["level"] is not None else []
    args += ["--strict"] if options["strict"] else []
    args += ["--max-pixels", max_pixels] if max_pixels else []
    paths = [out] if options["samples"] == 1 else [workdir / f"out-{k}.png" for k in range(options["samples"])]
    decode_failed = isinstance(images, sicc.SiccError)
    _run_cli("sicc decode", args, workdir, (4,) if decode_failed else (0,), paths, process)
    if not decode_failed:
        for path, image in zip(paths, images):
            with Image.open(path) as written:
                if not np.array_equal(np.asarray(written), np.asarray(image)):
                    raise Crash("cli", f"sicc decode wrote other pixels than sicc.decode ({path.name})")
    _clear(workdir)


def exercise_encode(weights: Path, workdir: Path, image: bytes, max_pixels: int | None) -> list[str]:
    """A (mutated) image through ``sicc encode -o``: exit 0 with a SIC file the model reads back,
    or exit 3 (cannot read the image) with nothing written."""
    import sicc

    _clear(workdir)
    source, out = workdir / "in.png", workdir / "out.sic"
    source.write_bytes(image)
    args = ["encode", "-q", source, "-o", out, "--weights", weights, "--levels", 2]
    args += ["--max-pixels", max_pixels] if max_pixels else []
    process = random.Random(zlib.crc32(image) ^ 0x5EED).random() < PROCESS_SHARE
    result = _run_cli("sicc encode", args, workdir, (0, 3), [out], process)
    if result.code == 0:
        written = out.read_bytes()
        try:
            if len(sicc.info(written).levels) != 2:
                raise Crash("cli", "sicc encode --levels 2 wrote another number of levels")
        except sicc.SiccError as exc:
            raise Crash("cli", f"sicc encode wrote a file sicc cannot read: {exc}") from None
    _clear(workdir)
    return [f"encode exit {result.code}: " + normalize(result.stderr_lines[-1].split(f"{source.name}: ", 1)[-1])
            if result.code else "encode exit 0"]


def seed_images() -> list[bytes]:
    """Small PNG, JPEG and WebP files (with and without metadata) for the encode path."""
    import io

    from PIL import Image

    from tests.conftest import image_with_metadata, synthetic_image

    out = []
    for fmt, image in (("PNG", Image.fromarray(synthetic_image(40, 56, seed=6))),
                       ("PNG", image_with_metadata(24, 30, seed=7, note="fuzz", icc=b"icc" * 9)),
                       ("JPEG", Image.fromarray(synthetic_image(33, 17, seed=8))),
                       ("WEBP", Image.fromarray(synthetic_image(16, 64, seed=9)).convert("L"))):
        buf = io.BytesIO()
        image.save(buf, fmt, exif=image.info.get("exif", b""), icc_profile=image.info.get("icc_profile"))
        out.append(buf.getvalue())
    plain = Image.fromarray(synthetic_image(20, 28, seed=10))
    for fmt, block in (("PNG", MISTYPED_EXIF["orientation-ascii"]), ("JPEG", MISTYPED_EXIF["orientation-ascii"]),
                       ("PNG", MISTYPED_EXIF["strip-offsets-2^32"]), ("JPEG", MISTYPED_EXIF["strip-offsets-2^32"])):
        buf = io.BytesIO()
        plain.save(buf, fmt, exif=block)
        out.append(buf.getvalue())
    return out


def exif_block(entries: list[tuple[int, int, int, bytes | int]]) -> bytes:
    """A little-endian EXIF block with one directory of (tag, type, count, value) entries, written
    by hand so that its types can be wrong (Pillow would not write them)."""
    body = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    extra, extra_at = b"", 8 + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in entries:
        if isinstance(value, bytes) and len(value) > 4:
            field_value, extra = struct.pack("<I", extra_at + len(extra)), extra + value
        else:
            field_value = value.ljust(4, b"\0") if isinstance(value, bytes) else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, count) + field_value
    return b"Exif\x00\x00" + body + b"\0\0\0\0" + extra


MISTYPED_EXIF = {
    "orientation-ascii": exif_block([(0x0112, 2, 2, b"1\0")]),  # Orientation as ASCII, not SHORT
    "strip-offsets-2^32": exif_block([(0x0111, 4, 1, 0xFFFFFFF0), (0x0112, 3, 1, 1)]),  # StripOffsets near 2^32
}
"""EXIF blocks with mistyped tags (issue 47): the fuzzer's images carry them, and so do SIC seed files."""


IMAGE_MUTATORS = ("m_bitflip", "m_bytes", "m_truncate", "m_insert_delete")


# -- weights files ---------------------------------------------------------------------
WEIGHTS_SHARE = 1 / 10
"""Share of the inputs that are mutated weights files (a weights file is code: issue 47)."""
_SAME_LENGTH_OPS = (("Conv", "Cast", "Sqrt", "Relu", "Tile", "Loop", "Size"), ("Add", "Sub", "Mul", "Div", "Pow", "Pad", "Neg", "Abs"),
                    ("Reshape", "Squeeze", "Expand\0"), ("ConstantOfShape", "ConstantOfShapf"))


def zip_members(data: bytes) -> dict[str, bytes]:
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def zip_of(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _npy(array) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _load_npy(data: bytes):
    import io

    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def consistent_weights(members: dict[str, bytes]) -> dict[str, bytes]:
    """The members with the manifest's graph digests and model id recomputed, as a forger would
    (so that a mutation reaches the checks behind the id); unchanged when they do not parse."""
    import hashlib

    import numpy as np

    from sicc.model.config import ModelConfig
    from sicc.model.weights import GRAPHS, compute_model_id, graph_digest

    try:
        manifest = json.loads(bytes(_load_npy(members["manifest.npy"])).decode())
        arrays = {name[:-4]: _load_npy(data) for name, data in members.items() if name != "manifest.npy"}
        graphs = {n: arrays[f"graph/{n}"].tobytes() for n in GRAPHS}
        keys = {n: manifest["graphs"][n]["state_keys"] for n in GRAPHS}
        state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
        manifest["model_id"] = compute_model_id(ModelConfig.from_dict(manifest["config"]), state,
                                                arrays["z_frequencies"], arrays["scale_table"],
                                                graph_digest(graphs, keys, manifest["scale_offset"])).hex()
        for n in GRAPHS:
            manifest["graphs"][n]["sha256"] = hashlib.sha256(graphs[n]).hexdigest()
    except Exception:  # noqa: BLE001 - a mutation that breaks parsing stays as it is
        return members
    out = dict(members)
    out["manifest.npy"] = _npy(np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8))
    return out


def mutate_weights(rng: random.Random, base: bytes) -> bytes:
    """A weights file with a config field, the scale offset, a graph's bytes or ops, or a tensor
    changed (then, mostly, made self-consistent again), or its zip bytes flipped."""
    import numpy as np

    members = zip_members(base)
    action = rng.randrange(6)
    if action == 5:
        return m_bitflip(rng, base, [base])
    if action == 0:
        manifest = json.loads(bytes(_load_npy(members["manifest.npy"])).decode())
        field_name = rng.choice(sorted(manifest["config"]) + ["scale_offset", "format", "graphs"])
        value = rng.choice([0, -1, 1, 2, 3, 7, 255, 256, 1 << 20, 1 << 31, "8", None, 1.5, True])
        if field_name in manifest["config"]:
            if rng.random() < 0.1:
                del manifest["config"][field_name]
            else:
                manifest["config"][field_name] = value
        elif field_name == "graphs":
            name = rng.choice(sorted(manifest["graphs"]))
            rng.shuffle(manifest["graphs"][name]["state_keys"])
        else:
            manifest[field_name] = value
        members["manifest.npy"] = _npy(np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8))
    elif action in (1, 2):
        name = rng.choice([n for n in members if n.startswith("graph/")])
        graph = _load_npy(members[name]).tobytes()
        if action == 1:
            graph = m_bytes(rng, graph, [graph]) if rng.random() < 0.5 else m_bitflip(rng, graph, [graph])
        else:
            group = rng.choice(_SAME_LENGTH_OPS)
            old, new = rng.sample(group, 2)
            graph = graph.replace(old.encode(), new.encode(), rng.choice((1, 1, -1)))
        members[name] = _npy(np.frombuffer(graph, dtype=np.uint8))
    else:
        name = rng.choice([n for n in members if n.startswith(("model/", "z_frequencies", "scale_table"))])
        array = _load_npy(members[name])
        choice = rng.randrange(4)
        if choice == 0 and array.size:
            array = array.reshape(-1)[: rng.randrange(array.size)]
        elif choice == 1:
            array = np.concatenate([array.reshape(-1), array.reshape(-1)[:3]])
        elif choice == 2 and array.size:
            array = array.copy()
            array.reshape(-1)[rng.randrange(array.size)] = rng.choice([0, -1, 1e30, np.nan, np.inf]) \
                if array.dtype.kind == "f" else rng.choice([0, -1, 1 << 40])
        else:
            array = array.astype(rng.choice(["<f8", "<i8", "<f4", "|u1"]))
        members[name] = _npy(array)
    if rng.random() < 0.75:
        members = consistent_weights(members)
    return zip_of(members)


def exercise_weights(workdir: Path, data: bytes) -> list[str]:
    """A (mutated) weights file: loading it succeeds or raises WeightsError (nothing else), and a
    codec it gives encodes and decodes a small image or raises a SiccError; then the same through
    ``sicc encode --weights`` (exit 0 or 4; in a whole process for a share of the inputs)."""
    import numpy as np

    import sicc
    from sicc import Codec
    from sicc.errors import WeightsError
    from sicc.model.weights import load_weights
    from tests.conftest import synthetic_image

    _clear(workdir)
    path = workdir / f"w-{hashlib.sha1(data).hexdigest()[:12]}.npz"  # its own name: Codec.load caches by path
    path.write_bytes(data)
    seen = []
    try:
        codec = Codec(load_weights(path))
    except WeightsError as exc:
        _check_message("weights", exc)
        seen.append(f"weights: WeightsError: {normalize(str(exc).split(': ', 1)[-1])}")
        codec = None
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise Crash("weights", f"load: {type(exc).__name__}: {exc} [{_last_frames(exc)}]") from None
    if codec is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                coded = codec.encode(synthetic_image(24, 40, seed=3), levels=2, threads=1)
                image = codec.decode(coded, spread=0.0, threads=1)[0]
            if image.size != (40, 24):
                raise Crash("weights", f"decoded size {image.size}")
            seen.append("weights: encode and decode ok" if np.asarray(image).size else "weights: empty image")
        except sicc.SiccError as exc:
            seen.append(f"weights: {type(exc).__name__}: {normalize(str(exc))[:120]}")
        except Crash:
            raise
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Crash("weights", f"run: {type(exc).__name__}: {exc} [{_last_frames(exc)}]") from None
    from PIL import Image

    source, out = workdir / "in.png", workdir / "out.sic"
    Image.fromarray(synthetic_image(16, 24, seed=4)).save(source)
    process = random.Random(zlib.crc32(data) ^ 0x5EED).random() < PROCESS_SHARE
    result = _run_cli("sicc encode --weights", ["encode", "-q", source, "-o", out, "--weights", path, "--levels", 1],
                      workdir, (0, 4), [out], process)
    if codec is None and result.code != 4:  # (a codec that loads may still fail on some image: 0 or 4)
        raise Crash("weights", f"sicc encode --weights exits {result.code} where the API refused the file")
    _clear(workdir)
    return seen


# -- the worker process ----------------------------------------------------------------
def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def worker(weights: Path, seed: int, current: Path, max_pixels: int | None, memory_cap: int,
           cli: bool = True) -> None:
    """Mutate and run inputs forever; one JSON line per input on stdout."""
    warnings.simplefilter("ignore")
    from sicc import Codec, tiling

    tiling.default_threads = lambda: 1

    codec = Codec.load(weights)
    corpus = seed_files(codec)
    images = seed_images()
    workdir = Path(tempfile.mkdtemp(prefix="sicc-fuzz-cli-", dir=current.parent))
    commands = (weights, workdir) if cli else None
    for data in corpus[:5]:  # warm up every code path before the memory cap (the seeds with
        exercise(codec, data, max_pixels, commands)  # mistyped EXIF are inputs, not warm-up)
    if cli:
        for image in images[:4]:
            exercise_encode(weights, workdir, image, max_pixels)
        exercise_weights(workdir, Path(weights).read_bytes())
    warnings.resetwarnings()
    if memory_cap and sys.platform.startswith("linux"):
        import resource

        limit = _address_space() + memory_cap
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    rng = random.Random(seed)
    base_weights = Path(weights).read_bytes()
    while True:
        draw = rng.random()
        kind = "sic"
        if cli and draw < 1 / 8:
            kind = "encode"
            data = rng.choice(images)
            for _ in range(rng.choice((1, 1, 2))):
                data = globals()[rng.choice(IMAGE_MUTATORS)](rng, data, images)
        elif cli and draw < 1 / 8 + WEIGHTS_SHARE:
            kind = "weights"
            data = mutate_weights(rng, base_weights)
        else:
            data = mutate(rng, corpus)
        current.write_bytes(data)
        current.with_suffix(".kind").write_text(kind)
        record: dict = {}
        try:
            record["seen"] = (exercise_encode(weights, workdir, data, max_pixels) if kind == "encode"
                              else exercise_weights(workdir, data) if kind == "weights"
                              else exercise(codec, data, max_pixels, commands))
        except Crash as crash:
            record["crash"] = {"kind": crash.kind, "detail": crash.detail, "encode": kind == "encode",
                               "weights": kind == "weights", "input": base64.b64encode(data).decode()}
        out.write(json.dumps(record) + "\n")
        out.flush()


# -- the parent: run, watch, save -----------------------------------------------------
@dataclass
class FuzzReport:
    executions: int = 0
    seconds: float = 0.0
    crashes: list[dict] = field(default_factory=list)  # kind, detail, path
    messages: Counter = field(default_factory=Counter)  # normalized error/warning -> count
    workers_started: int = 0

    def summary(self) -> str:
        lines = [f"executions: {self.executions} in {self.seconds:.0f} s "
                 f"({self.executions / max(self.seconds, 1e-9):.1f}/s, {self.workers_started} worker(s))",
                 f"crashes: {len(self.crashes)}"]
        lines += [f"  [{c['kind']}] {c['detail']}\n    saved as {c['path']}" for c in self.crashes]
        lines.append(f"distinct error/warning messages reached: {len(self.messages)}")
        lines += [f"  {count:7d}  {message}" for message, count in sorted(self.messages.items())]
        return "\n".join(lines)


def _save(data: bytes, kind: str, save_dir: Path, suffix: str = ".sic") -> Path:
    save_dir.mkdir(parents=True, exist_ok=True)
    path = save_dir / f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}{suffix}"
    path.write_bytes(data)
    return path


def fuzz(seconds: float, seed: int = 0, save_dir: Path = REGRESSIONS, weights: Path | str | None = None,
         max_pixels: int | None = FUZZ_MAX_PIXELS, hang_seconds: float = HANG_SECONDS,
         memory_cap: int = MEMORY_CAP, max_crashes_per_signature: int = 3, cli: bool = True) -> FuzzReport:
    """Fuzz for ``seconds`` of executions (worker start-ups, slow on a busy machine, are not
    counted); crashing inputs go to ``save_dir``. ``weights``: a weights file, "shipped" (the
    shipped model) or None (a fresh tiny model); ``cli``: run the command's writers too."""
    report = FuzzReport()
    signatures: Counter = Counter()

    def on_crash(crash: dict, data: bytes) -> None:
        signature = (crash["kind"], re.sub(r"\d+", "N", crash["detail"])[:200])
        signatures[signature] += 1
        if signatures[signature] <= max_crashes_per_signature:
            suffix = ".png" if crash.get("encode") else ".npz" if crash.get("weights") else ".sic"
            path = _save(data, crash["kind"], Path(save_dir), suffix)
            report.crashes.append({"kind": crash["kind"], "detail": crash["detail"], "path": str(path)})

    start = time.monotonic()
    budget = {"deadline": start + seconds}
    with tempfile.TemporaryDirectory(prefix="sicc-fuzz-") as tmp:
        tmp = Path(tmp)
        if str(weights) == "shipped":
            from sicc.model.weights import default_weights_path

            weights = default_weights_path()
        weights = Path(weights) if weights else make_tiny_weights(tmp / "tiny.npz")
        current = tmp / "current.bin"
        attempt = 0
        while time.monotonic() < budget["deadline"]:
            attempt += 1
            cmd = [sys.executable, "-m", "tests.fuzz", "--worker", "--weights", str(weights),
                   "--seed", str(seed * 1000 + attempt), "--current", str(current),
                   "--max-pixels", str(max_pixels or 0), "--memory-cap", str(memory_cap)] + ([] if cli else ["--no-cli"])
            with open(tmp / "worker.err", "w+b") as err:  # a file: a full pipe would stall the worker
                proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
                report.workers_started += 1
                try:
                    fatal = _watch(proc, report, budget, hang_seconds, on_crash, err)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                    proc.wait()
                    proc.stdout.close()
            if fatal is not None:  # a hang or a dead worker: the input is the last one it started
                if fatal.get("startup"):
                    raise RuntimeError(f"fuzz worker failed to start: {fatal['detail']}")
                kind_file = current.with_suffix(".kind")
                kind = kind_file.read_text() if kind_file.exists() else "sic"
                on_crash({**fatal, "encode": kind == "encode", "weights": kind == "weights"},
                         current.read_bytes() if current.exists() else b"")
    report.seconds = time.monotonic() - start
    return report


def _watch(proc: subprocess.Popen, report: FuzzReport, budget: dict, hang_seconds: float,
           on_crash, err, start_timeout: float = 180.0) -> dict | None:
    """Read the worker's lines until ``budget["deadline"]``, which moves on by the worker's
    start-up time. Returns None at the deadline, or the fatal problem (hang, death) that
    stopped the worker."""
    ready = False
    spawned = time.monotonic()
    buffer = b""
    fd = proc.stdout.fileno()
    last = time.monotonic()
    while True:
        now = time.monotonic()
        deadline = budget["deadline"]
        if now >= deadline:
            return None
        if now - last > (hang_seconds if ready else start_timeout):
            if not ready:
                return {"startup": True, "detail": "no ready line"}
            return {"kind": "hang", "detail": f"no result within {hang_seconds:.0f} s"}
        readable, _, _ = select.select([fd], [], [], min(0.5, deadline - now))
        if not readable:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:  # the worker died
            proc.wait()
            err.seek(0)
            stderr = err.read().decode(errors="replace").strip().splitlines()
            if not ready:
                return {"startup": True, "detail": "\n".join(stderr[-20:])}
            return {"kind": "died", "detail": f"worker exited with {proc.returncode}: "
                                              f"{stderr[-1] if stderr else ''}"}
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            last = time.monotonic()
            record = json.loads(line)
            if record.get("ready"):
                ready = True
                budget["deadline"] += time.monotonic() - spawned
                continue
            report.executions += 1
            for message in record.get("seen", ()):
                report.messages[message] += 1
            if "crash" in record:
                on_crash(record["crash"], base64.b64decode(record["crash"]["input"]))


# -- replaying saved inputs ------------------------------------------------------------
def replay(codec, path: Path, seconds: float = HANG_SECONDS, weights: Path | None = None) -> list[str]:
    """Run one saved input in this process, with an alarm for hangs; raises :class:`Crash`."""
    import signal

    def on_alarm(signum, frame):
        raise Crash("hang", f"{path.name} ran for more than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        if path.suffix == ".png":  # an input of the encode path
            if weights is None:
                raise ValueError("replaying an image needs the weights file of the codec")
            with tempfile.TemporaryDirectory() as workdir:
                return exercise_encode(weights, Path(workdir), path.read_bytes(), FUZZ_MAX_PIXELS)
        if path.suffix == ".npz":  # a weights file
            with tempfile.TemporaryDirectory() as workdir:
                return exercise_weights(Path(workdir), path.read_bytes())
        return exercise(codec, path.read_bytes())
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def missing_dev_extras(tiny_model: bool = True) -> list[str]:
    """The modules of the dev extras this fuzzer needs that are not installed: pytest (the test
    helpers), and torch and onnx to make the tiny model."""
    import importlib

    missing = []
    for name in ["pytest"] + (["torch", "onnx"] if tiny_model else []):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock")
    parser.add_argument("--out", type=Path, default=REGRESSIONS, help="where crashing inputs are saved")
    parser.add_argument("--weights", default=None,
                        help="a weights file, or 'shipped' for the shipped model (default: a fresh tiny model)")
    parser.add_argument("--no-cli", dest="cli", action="store_false",
                        help="skip the command-line writers (sicc info/truncate/decode/encode)")
    parser.add_argument("--max-pixels", type=int, default=FUZZ_MAX_PIXELS, help="0: no limit")
    parser.add_argument("--hang-seconds", type=float, default=HANG_SECONDS)
    parser.add_argument("--memory-cap", type=int, default=MEMORY_CAP)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--current", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(Path(args.weights), args.seed, args.current, args.max_pixels or None, args.memory_cap, args.cli)
        return 0
    missing = missing_dev_extras(tiny_model=args.weights is None)
    if missing:
        print(f"python -m tests.fuzz needs the dev extras (missing: {', '.join(missing)}); from the repository "
              "root: pip install -e \".[dev]\"", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"fuzzing for {args.seconds:.0f} s, seed {seed}, crashes to {args.out}", flush=True)
    report = fuzz(args.seconds, seed=seed, save_dir=args.out, weights=args.weights,
                  max_pixels=args.max_pixels or None, hang_seconds=args.hang_seconds, memory_cap=args.memory_cap,
                  cli=args.cli)
    print(report.summary())
    return 1 if report.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
