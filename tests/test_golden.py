"""Committed golden files: the format and the decode path must keep reading old files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.make_golden import DATA, SOURCE, golden_source, latent_digest
from tests.spec_parser import layout_problem, read_chunks, read_header

GOLDENS = [name for name in ("tiny", "tiny-gray", "shipped") if (DATA / f"golden-{name}.sic").exists()]


def _codec(name: str):
    from sicc import Codec

    return Codec.load(DATA / "golden-tiny.npz" if name.startswith("tiny") else None)


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_file_matches_the_spec(name):
    data = (DATA / f"golden-{name}.sic").read_bytes()
    expected = json.loads((DATA / f"golden-{name}.json").read_text())
    header = read_header(data)
    assert header["version"] == 1 and header["header_crc_ok"]
    assert header["grayscale"] == name.endswith("-gray") and header["flags"] in (0, 1)
    assert (header["width"], header["height"]) == Image.open(SOURCE).size
    assert header["model_id"] == expected["model_id"]
    chunks = read_chunks(data)
    assert [c.kind for c in chunks] == ["HYPR"] + ["LEVL"] * header["model_levels"]
    assert all(c.crc_ok for c in chunks)
    assert [c.payload[0] for c in chunks[1:]] == list(range(1, header["model_levels"] + 1))
    assert all((c.length - 1) % 4 == 0 for c in chunks[1:]) and chunks[0].length % 4 == 0
    assert chunks[-1].offset + 8 + chunks[-1].length + 4 == len(data)
    assert layout_problem(chunks) is None


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_file_decodes_to_the_committed_result(name):
    codec = _codec(name)
    data = (DATA / f"golden-{name}.sic").read_bytes()
    expected = json.loads((DATA / f"golden-{name}.json").read_text())
    for case, spec in expected["cases"].items():
        kwargs = {k: spec[k] for k in ("spread", "level", "seed")}
        assert latent_digest(codec, data, spec["level"]) == spec["latent_sha256"], case
        decoded = codec.decode(data, **kwargs)[0]
        reference = Image.open(DATA / f"golden-{name}-{case}.png")
        assert decoded.mode == reference.mode == ("L" if name.endswith("-gray") else "RGB")
        got, want = np.asarray(decoded, dtype=np.int16), np.asarray(reference, dtype=np.int16)
        # latents are exact; the float synthesis may differ by one level on another CPU
        assert np.abs(got - want).max() <= 1, case
        assert (got == want).mean() > 0.999, case


@pytest.mark.parametrize("name", GOLDENS)
def test_encoder_reproduces_the_golden_file(name):
    codec = _codec(name)
    assert codec.encode(golden_source(name)) == (DATA / f"golden-{name}.sic").read_bytes()


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_pixels_match_the_torch_network(name):
    """The ONNX runtime's pixels stay within +-1 of the torch network's synthesis of the same
    (bit-identical) latents, the level tables of the decoded level applied where the model has them
    (needs the training extras)."""
    torch = pytest.importorskip("torch")
    from sicc.codec import _seed_generator
    from sicc.train.export import build_model

    codec = _codec(name)
    model = build_model(codec.weights)
    data = (DATA / f"golden-{name}.sic").read_bytes()
    expected = json.loads((DATA / f"golden-{name}.json").read_text())
    for case, spec in expected["cases"].items():
        parsed = codec.parse(data)
        level = len(parsed.levels) if spec["level"] is None else spec["level"]
        base, coded = codec.decode_latents(parsed, level)
        sampled = spec["spread"] != 0 and coded.shape[0] < codec.config.latent
        y = codec.complete_latent(coded, base, spec["spread"], _seed_generator(spec["seed"], 0) if sampled else None)
        with torch.no_grad():
            x = model.synthesize(torch.from_numpy(y.astype(np.float32))[None], level)  # level tables, if any
        h, w = parsed.header.height, parsed.header.width
        reference = x[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        if name.endswith("-gray"):  # a gray file decodes to the luma of the network's RGB
            reference = np.asarray(Image.fromarray(reference).convert("L"))
        got = np.asarray(codec.decode(data, spread=spec["spread"], level=spec["level"], seed=spec["seed"])[0])
        diff = np.abs(got.astype(int) - reference.astype(int))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, case
