"""Reference data for the JavaScript decoder's tests (web/test/), computed by the Python decoder.

    python -m tests.web_reference OUT_DIR

Writes, for each committed golden file, ``OUT_DIR/<name>.json`` (exact decoded latents, sampled
latents for a few seeds and levels, the outcome of every prefix of the file and of a set of
corrupted files) and ``OUT_DIR/<name>-<case>.rgb`` (the Python decode's pixels), plus the web
bundles of the shipped and tiny models in ``OUT_DIR/bundle-shipped`` and ``OUT_DIR/bundle-tiny``;
and for level tables (sicc.model.level_film) the tiny model given random ones
(``OUT_DIR/bundle-tiny-film``), a file it encoded and its decodes at several levels
(``OUT_DIR/tiny-film.json``, ``tiny-film-<case>.rgb``, and ``tiny-film-<case>-plain.rgb``: the
same latent through g_s without the tables); and the same for inner level tables, made with torch
(``OUT_DIR/bundle-tiny-inner-film``, ``OUT_DIR/tiny-inner-film.json`` and its ``.rgb`` files; without
torch the JSON says why there are none, and the node test skips).
Nothing here is typed in: every expected value is what ``sicc`` itself computes.
"""

from __future__ import annotations

import json
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np

from sicc import container
from sicc.codec import Codec, _seed_generator
from sicc.errors import SiccError
from sicc.export.web import export_web
from sicc.model.level_film import SCALE_KEY, SHIFT_KEY

DATA = Path(__file__).resolve().parent / "data"
GOLDENS = {"shipped": None, "tiny": DATA / "golden-tiny.npz", "tiny-gray": DATA / "golden-tiny.npz"}
SAMPLE_CASES = [(0, 7, 0), (1, 0, 0), (1, 0, 1), (3, 7, 0), (8, 123456789012, 2), (15, 1, 0)]
"""(level, seed, sample) of the sampled latents compared exactly (spread 2)."""
PIXEL_CASES = {"det": dict(level=None, seed=0, spread=0.0), "l3-s7": dict(level=3, seed=7, spread=2.0),
               "l1-s0": dict(level=1, seed=0, spread=2.0)}


def _outcome(codec: Codec, data: bytes, decode: bool, strict: bool = False) -> dict:
    """What the Python decoder does with ``data``: the error (class, message) or the levels it
    decodes and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parsed = codec.parse(data, strict=strict)
            levels = len(parsed.levels)
            if decode:
                _, y = codec.decode_latents(parsed, levels, strict=strict)
                levels = y.shape[0] // codec.config.group_size
        except SiccError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}
    return {"levels": levels, "warnings": [str(w.message) for w in caught]}


def _chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """(start, type, end) of each chunk."""
    out, pos = [], container.HEADER_SIZE
    while pos < len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        out.append((pos, kind, pos + 12 + length))
        pos += 12 + length
    return out


def _rechunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack("<4sI", kind, len(payload)) + payload + struct.pack("<I", zlib.crc32(kind + payload))


def corruptions(data: bytes) -> dict[str, bytes]:
    """Damaged copies of a file: each kind of problem the decoder must name."""
    chunks = _chunks(data)
    hypr = next(c for c in chunks if c[1] == b"HYPR")
    levels = [c for c in chunks if c[1] == b"LEVL"]
    out = {}
    bad = bytearray(data)
    bad[0] ^= 0xFF
    out["bad-magic"] = bytes(bad)
    bad = bytearray(data)
    bad[8] = 2
    out["version-2"] = bytes(bad)
    bad = bytearray(data)
    bad[14] ^= 1
    out["header-crc"] = bytes(bad)
    bad = bytearray(data[:28])
    bad[20] ^= 1
    out["other-model"] = bytes(bad) + struct.pack("<I", zlib.crc32(bytes(bad))) + data[32:]
    bad = bytearray(data)
    bad[hypr[0] + 12] ^= 0x10
    out["hyper-crc"] = bytes(bad)
    payload = bytearray(data[hypr[0] + 8 : hypr[2] - 4])
    payload[len(payload) // 2] ^= 0x55
    out["hyper-forged"] = data[: hypr[0]] + _rechunk(b"HYPR", bytes(payload)) + data[hypr[2] :]
    out["hyper-short"] = data[: hypr[0]] + _rechunk(b"HYPR", data[hypr[0] + 8 : hypr[0] + 12]) + data[hypr[2] :]
    for index in (1, min(5, len(levels)), len(levels)):
        start, _, end = levels[index - 1]
        bad = bytearray(data)
        bad[end - 6] ^= 0x01
        out[f"level{index}-crc"] = bytes(bad)
        payload = bytearray(data[start + 8 : end - 4])
        payload[1 + (len(payload) - 1) // 2] ^= 0x5A
        out[f"level{index}-forged"] = data[:start] + _rechunk(b"LEVL", bytes(payload)) + data[end:]
        payload = data[start + 8 : end - 4] + b"\0\0\0\0"
        out[f"level{index}-extra-word"] = data[:start] + _rechunk(b"LEVL", payload) + data[end:]
        if len(payload) > 9:
            out[f"level{index}-short"] = data[:start] + _rechunk(b"LEVL", data[start + 8 : end - 8]) + data[end:]
    start, _, end = levels[1]
    out["level2-wrong-index"] = data[:start] + _rechunk(b"LEVL", b"\x07" + data[start + 9 : end - 4]) + data[end:]
    out["junk-after-hyper"] = data[: hypr[2]] + _rechunk(b"JUNK", b"1234")
    return out


def reference(name: str, weights: Path | None, out: Path) -> None:
    codec = Codec.load(weights)
    data = (DATA / f"golden-{name}.sic").read_bytes()
    parsed = codec.parse(data)
    _, y = codec.decode_latents(parsed, len(parsed.levels))
    from sicc.coding import decode_categorical
    from sicc.model.geometry import hyper_size

    zh, zw = hyper_size(parsed.header.height, parsed.header.width)
    z = decode_categorical(parsed.hyper, codec.weights.z_frequencies, zh * zw) - 64
    base = codec.probability.hyper_base(z.reshape(-1, zh, zw))
    g = codec.config.group_size
    sampled = []
    for level, seed, sample in SAMPLE_CASES:
        latent = codec.complete_latent(y[: level * g], base, 2.0, _seed_generator(seed, sample))
        sampled.append({"level": level, "seed": seed, "sample": sample, "spread": 2.0,
                        "y": latent.astype(int).ravel().tolist()})
    pixels = {}
    for case, kw in PIXEL_CASES.items():
        image = codec.decode(data, **kw)[0]
        array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        (out / f"{name}-{case}.rgb").write_bytes(array.tobytes())
        pixels[case] = {**kw, "file": f"{name}-{case}.rgb", "mode": image.mode}
    prefixes = [_outcome(codec, data[:n], decode=False) for n in range(len(data) + 1)]
    damaged = {}
    for label, bad in corruptions(data).items():
        (out / f"{name}-{label}.sic").write_bytes(bad)
        damaged[label] = {"file": f"{name}-{label}.sic", "lenient": _outcome(codec, bad, decode=True),
                          "strict": _outcome(codec, bad, decode=True, strict=True)}
    reference = {
        "name": name, "file": str(DATA / f"golden-{name}.sic"), "bundle": "bundle-" + ("shipped" if weights is None else "tiny"),
        "width": parsed.header.width, "height": parsed.header.height, "levels": len(parsed.levels),
        "z": z.astype(int).ravel().tolist(), "y": y.astype(int).ravel().tolist(),
        "sampled": sampled, "pixels": pixels, "prefixes": prefixes, "corrupted": damaged,
    }
    (out / f"{name}.json").write_text(json.dumps(reference))


def coding_cases(out: Path, seed: int = 20261206) -> None:
    """Random symbols coded by constriction (through sicc.coding) under the whole range of
    parameters the model can give: means far outside [-255, 255], every scale of the scale table,
    symbols deep in the tails (where only the leaky floor of one count codes them)."""
    from sicc.coding import encode_categorical, encode_gaussian

    rng = np.random.default_rng(seed)
    table = Codec.default().weights.scale_table
    cases = []
    for n in (1, 2, 3, 7, 64, 1000, 50000):
        means = rng.normal(0, 30, n) * rng.random(n) ** 3 + rng.choice([0, 0, 0, 0.5, -0.25], n)
        means[: n // 50] = rng.uniform(-400, 400, n // 50)
        scales = rng.choice(table, n)
        noise = rng.normal(size=n) * rng.choice([1, 1, 1, 3, 10, 100], n)
        symbols = np.clip(np.rint(means + scales * noise), -255, 255).astype(np.int32)
        data = encode_gaussian(symbols, means, scales)
        cases.append({"kind": "gaussian", "data": data.hex(), "means": means.tolist(), "scales": scales.tolist(),
                      "symbols": symbols.tolist()})
    freq = Codec.default().weights.z_frequencies
    symbols = np.stack([rng.choice(129, size=500, p=row / row.sum()) for row in freq]).astype(np.int32)
    symbols[:, :3] = [0, 128, 64]  # the extremes: frequency-1 symbols
    cases.append({"kind": "categorical", "data": encode_categorical(symbols, freq).hex(), "frequencies": freq.tolist(),
                  "count": 500, "symbols": symbols.ravel().tolist()})
    (out / "coding.json").write_text(json.dumps(cases))
    # Left cumulative frequencies: a single symbol coded from the initial state seals to one word
    # (2**40 - 1) * left + 2**32 - 1 >> 32 = 256 * left, so constriction's own integer comes back.
    lefts = []
    for _ in range(6000):
        mean, scale = float(rng.normal(0, 20) * rng.random() ** 2), float(rng.choice(table))
        symbol = int(np.clip(np.rint(mean + scale * rng.normal() * rng.choice([0.5, 1, 2, 4])), -254, 255))
        words = np.frombuffer(encode_gaussian(np.array([symbol]), np.array([mean]), np.array([scale])), "<u4")
        lefts.append([symbol, mean, scale, int(words[0]) // 256])
    (out / "lefts.json").write_text(json.dumps(lefts))


FILM_CASES = {"det": dict(level=None, seed=0, spread=0.0), "l1": dict(level=1, seed=0, spread=0.0),
              "l3-s7": dict(level=3, seed=7, spread=2.0), "l8": dict(level=8, seed=0, spread=0.0)}
"""Decodes of the level-table reference: every level, and prefixes decoded and sampled."""


def with_level_tables(src: Path | None, dst: Path, seed: int = 48, size: float = 0.5) -> Path:
    """A copy of the weights ``src`` (a sicc-weights-2 or -3 file; None: the shipped one) given
    random level tables (normal, standard deviation ``size``), written as the sicc-weights-4 file
    ``dst`` under its own model id; no torch needed."""
    import dataclasses

    from sicc.model.weights import compute_model_id, graph_digest, load_weights, write_weights

    weights = load_weights(src)
    cfg = weights.config
    rng = np.random.default_rng(seed)
    state = dict(weights.model_state)
    state[SCALE_KEY] = (rng.normal(0, size, (cfg.levels, cfg.latent))).astype(np.float32)
    state[SHIFT_KEY] = (rng.normal(0, size, (cfg.levels, cfg.latent))).astype(np.float32)
    digest = graph_digest(weights.graphs, weights.graph_keys, weights.scale_offset)
    model_id = compute_model_id(cfg, state, weights.z_frequencies, weights.scale_table, digest)
    write_weights(dst, dataclasses.replace(weights, model_state=state, model_id=model_id))
    return dst


def film_reference(out: Path) -> None:
    """The level tables through both decoders: a tiny model with random tables, its bundle, a file
    it encoded (examples/kodim23.png) and the Python decode's pixels per case, with and without the
    tables applied to the same latent (the second shows that the tables change the picture)."""
    weights = with_level_tables(DATA / "golden-tiny.npz", out / "tiny-film.npz")
    codec = Codec.load(weights)
    export_web(out / "bundle-tiny-film", weights)
    data = codec.encode(Path(__file__).resolve().parents[1] / "examples" / "kodim23.png")
    (out / "tiny-film.sic").write_bytes(data)
    pixels = {}
    plain_film, codec.level_film = codec.level_film, None
    try:
        plain = {case: np.asarray(codec.decode(data, **kw)[0].convert("RGB"), dtype=np.uint8)
                 for case, kw in FILM_CASES.items()}
    finally:
        codec.level_film = plain_film
    for case, kw in FILM_CASES.items():
        array = np.asarray(codec.decode(data, **kw)[0].convert("RGB"), dtype=np.uint8)
        (out / f"tiny-film-{case}.rgb").write_bytes(array.tobytes())
        (out / f"tiny-film-{case}-plain.rgb").write_bytes(plain[case].tobytes())
        pixels[case] = {**kw, "file": f"tiny-film-{case}.rgb", "plain": f"tiny-film-{case}-plain.rgb"}
    (out / "tiny-film.json").write_text(json.dumps({"file": "tiny-film.sic", "bundle": "bundle-tiny-film",
                                                    "model_id": codec.model_id.hex(), "pixels": pixels}))


INNER_FILM_CASES = {**FILM_CASES, "l0-s7": dict(level=0, seed=7, spread=2.0)}
"""Decodes of the inner-table reference: those of the level tables, and a decode of no level (g_s
is given the identity rows)."""


def with_inner_tables(src: Path, dst: Path, seed: int = 49, size: float = 0.3) -> Path:
    """A copy of the weights ``src`` given random input and inner level tables (normal, standard
    deviation ``size``, from a seeded torch generator), exported by torch as the sicc-weights-5 file
    ``dst`` (its g_s graph takes the inner rows); needs torch and onnx."""
    import torch

    from sicc.train.export import export_weights, load_trainable

    net = load_trainable(src)
    net.model.add_level_film(inner=True)
    film = net.model.level_film
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in (film.scale, film.shift, film.inner_scale, film.inner_shift):
            table.copy_(torch.randn(table.shape, generator=generator) * size)
    export_weights(net, dst, {})
    return dst


def inner_film_reference(out: Path) -> None:
    """The inner level tables through both decoders: a tiny model with random input and inner
    tables, its bundle (sicc-web-3), a file it encoded and the Python decode's pixels per case, and
    the same latents decoded with the input tables but identity inner rows (``-plain``: the inner
    tables change the picture; a decode of no level has no plain one, its rows are the identity).
    Without torch, ``tiny-inner-film.json`` holds only why (the node test skips and says so)."""
    import dataclasses

    try:
        import torch  # noqa: F401
    except ImportError:
        why = "torch is not installed (pip install -e '.[train]'): no model with inner level tables"
        (out / "tiny-inner-film.json").write_text(json.dumps({"skip": why}))
        return
    weights = with_inner_tables(DATA / "golden-tiny.npz", out / "tiny-inner-film.npz")
    codec = Codec.load(weights)
    export_web(out / "bundle-tiny-inner-film", weights)
    data = codec.encode(Path(__file__).resolve().parents[1] / "examples" / "kodim23.png")
    (out / "tiny-inner-film.sic").write_bytes(data)
    film = codec.level_film
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the decode of no level warns that it is noise
        decoded = {case: np.asarray(codec.decode(data, **kw)[0].convert("RGB"), dtype=np.uint8)
                   for case, kw in INNER_FILM_CASES.items()}
        codec.level_film = dataclasses.replace(film, inner_gain=np.ones_like(film.inner_gain),
                                               inner_shift=np.zeros_like(film.inner_shift))
        try:
            plain = {case: np.asarray(codec.decode(data, **kw)[0].convert("RGB"), dtype=np.uint8)
                     for case, kw in INNER_FILM_CASES.items() if kw["level"] != 0}
        finally:
            codec.level_film = film
    pixels = {}
    for case, kw in INNER_FILM_CASES.items():
        (out / f"tiny-inner-film-{case}.rgb").write_bytes(decoded[case].tobytes())
        pixels[case] = {**kw, "file": f"tiny-inner-film-{case}.rgb", "plain": None}
        if case in plain:
            (out / f"tiny-inner-film-{case}-plain.rgb").write_bytes(plain[case].tobytes())
            pixels[case]["plain"] = f"tiny-inner-film-{case}-plain.rgb"
    (out / "tiny-inner-film.json").write_text(json.dumps({
        "file": "tiny-inner-film.sic", "bundle": "bundle-tiny-inner-film", "model_id": codec.model_id.hex(),
        "layers": int(film.inner_gain.shape[1]), "hidden": int(film.inner_gain.shape[2]), "pixels": pixels}))


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    export_web(out / "bundle-shipped", None)
    export_web(out / "bundle-tiny", DATA / "golden-tiny.npz")
    coding_cases(out)
    film_reference(out)
    inner_film_reference(out)
    for name, weights in GOLDENS.items():
        reference(name, weights, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
