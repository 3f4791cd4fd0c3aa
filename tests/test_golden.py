"""Committed golden files: the format and the decode path must keep reading old files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.make_golden import DATA, SOURCE, latent_digest
from tests.spec_parser import read_chunks, read_header

GOLDENS = [name for name in ("tiny", "shipped") if (DATA / f"golden-{name}.sic").exists()]


def _codec(name: str):
    from sicc import Codec

    return Codec.load(DATA / "golden-tiny.pt" if name == "tiny" else None)


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_file_matches_the_spec(name):
    data = (DATA / f"golden-{name}.sic").read_bytes()
    expected = json.loads((DATA / f"golden-{name}.json").read_text())
    header = read_header(data)
    assert header["version"] == 1 and header["header_crc_ok"]
    assert (header["width"], header["height"]) == Image.open(SOURCE).size
    assert header["model_id"] == expected["model_id"]
    chunks = read_chunks(data)
    assert [c.kind for c in chunks] == ["HYPR"] + ["LEVL"] * header["model_levels"]
    assert all(c.crc_ok for c in chunks)
    assert [c.payload[0] for c in chunks[1:]] == list(range(1, header["model_levels"] + 1))
    assert all((c.length - 1) % 4 == 0 for c in chunks[1:]) and chunks[0].length % 4 == 0
    assert chunks[-1].offset + 8 + chunks[-1].length + 4 == len(data)


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_file_decodes_to_the_committed_result(name):
    codec = _codec(name)
    data = (DATA / f"golden-{name}.sic").read_bytes()
    expected = json.loads((DATA / f"golden-{name}.json").read_text())
    for case, spec in expected["cases"].items():
        kwargs = {k: spec[k] for k in ("spread", "level", "seed")}
        assert latent_digest(codec, data, spec["level"]) == spec["latent_sha256"], case
        got = np.asarray(codec.decode(data, **kwargs)[0], dtype=np.int16)
        want = np.asarray(Image.open(DATA / f"golden-{name}-{case}.png").convert("RGB"), dtype=np.int16)
        # latents are exact; the float synthesis may differ by one level on another CPU
        assert np.abs(got - want).max() <= 1, case
        assert (got == want).mean() > 0.999, case


@pytest.mark.parametrize("name", GOLDENS)
def test_encoder_reproduces_the_golden_file(name):
    codec = _codec(name)
    assert codec.encode(SOURCE) == (DATA / f"golden-{name}.sic").read_bytes()
