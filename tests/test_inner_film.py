"""Inner level tables (issue 48, item 4 carried further: g_s's hidden layers told the level). Beside
the input tables, a network may hold per level, per inner layer (the output of each inverse GDN of
g_s) and hidden channel a scale and a shift. Zero tables are the identity; training adds them to a
checkpoint without them and trains them with g_s; the export writes a ``sicc-weights-5`` file whose
g_s graph takes the level's rows as inputs, and the runtime decodes as the training network
computes. Bad inner tables and graphs that do not take them are refused in one line."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sicc.codec import Codec  # noqa: E402
from sicc.errors import WeightsError  # noqa: E402
from sicc.model.config import TINY  # noqa: E402
from sicc.model.graph_check import GraphProblem, check_graph  # noqa: E402
from sicc.model.level_film import (GAIN_INPUT, INNER_SCALE_KEY, INNER_SHIFT_KEY, SHIFT_INPUT,  # noqa: E402
                                   film_transform)
from sicc.model.weights import (INNER_FILM_WEIGHTS_FORMAT, LEVEL_FILM_WEIGHTS_FORMAT, compute_model_id,  # noqa: E402
                                graph_digest, load_weights, write_weights)
from sicc.train.export import export_weights  # noqa: E402
from sicc.train.loop import Trainer, TrainSettings, load_checkpoint, run  # noqa: E402
from sicc.train.objective import LossSettings, SICTrainable  # noqa: E402
from tests.conftest import synthetic_image  # noqa: E402
from tests.test_train_fast import _L1Perceptual, _RandomCrops  # noqa: E402
from tests.test_train_level_film import changed_by_run  # noqa: E402

INNER = ("model.level_film.inner_scale", "model.level_film.inner_shift")


def _random_tables(net: SICTrainable, size: float = 0.3, seed: int = 0) -> SICTrainable:
    gen = torch.Generator().manual_seed(seed)
    film = net.model.level_film
    with torch.no_grad():
        for p in (film.scale, film.shift, film.inner_scale, film.inner_shift):
            p.copy_(torch.randn(p.shape, generator=gen) * size)
    return net


def _trainer(seed=0, net=None, loss=LossSettings(), **kw):
    torch.manual_seed(seed)
    settings = TrainSettings(lr=1e-3, seed=seed, checkpoint_every=10**6, loss=loss, **kw)
    return Trainer(net or SICTrainable(TINY), _RandomCrops(seed), _L1Perceptual(), settings)


def test_zero_inner_tables_are_the_identity_in_training():
    torch.manual_seed(0)
    net = SICTrainable(TINY, level_film=True)
    with torch.no_grad():
        net.model.level_film.scale.normal_(0, 0.3)
    inner = SICTrainable(TINY, level_film=True, inner_film=True)
    missing = inner.load_state_dict(net.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(INNER)
    assert inner.model.level_film.inner_scale.shape == (TINY.levels, 3, TINY.hidden)
    latent = torch.round(torch.randn(1, TINY.latent, 4, 6) * 3)
    with torch.no_grad():
        for level in (0, 1, 9, 16):
            assert torch.equal(inner.model.synthesize(latent, level), net.model.synthesize(latent, level))
        inner.model.level_film.inner_shift[4, 1, 2] = 0.5  # level 5, the second inner layer
        assert torch.equal(inner.model.synthesize(latent, 4), net.model.synthesize(latent, 4))
        assert not torch.equal(inner.model.synthesize(latent, 5), net.model.synthesize(latent, 5))


def test_the_runtime_decodes_as_the_training_network_computes(tmp_path):
    net = _random_tables(SICTrainable(TINY, level_film=True, inner_film=True))
    export_weights(net, tmp_path / "w.npz", {})
    weights = load_weights(tmp_path / "w.npz")
    assert weights.model_state[INNER_SCALE_KEY].shape == (TINY.levels, 3, TINY.hidden)
    codec = Codec(weights)
    assert codec.level_film.has_inner
    latent = torch.round(torch.randn(1, TINY.latent, 4, 6, generator=torch.Generator().manual_seed(1)) * 3)
    outer_only = SICTrainable(TINY, level_film=True)
    outer_only.load_state_dict({k: v for k, v in net.state_dict().items() if k not in INNER})
    for level in (0, 1, 7, 16):
        with torch.no_grad():
            expected = net.model.synthesize(latent, level).numpy()
            without = outer_only.model.synthesize(latent, level).numpy()
        got = film_transform(codec.transforms.g_s, codec.level_film, level)(latent.numpy())
        assert np.abs(got - expected).max() < 1e-4, level
        if level:
            assert np.abs(got - without).max() > 1e-2, level  # the inner rows do something at this level
    rows = codec.level_film.inner_rows(3)
    assert rows[GAIN_INPUT].dtype == np.float32
    assert np.array_equal(rows[GAIN_INPUT], np.float32(1) + weights.model_state[INNER_SCALE_KEY][2])
    assert np.array_equal(codec.level_film.inner_rows(0)[GAIN_INPUT], np.ones((3, TINY.hidden), np.float32))


def test_zero_inner_tables_export_the_same_pictures(tmp_path):
    """The graph with inputs multiplies by one and adds zero: every pixel as without inner tables."""
    net = _random_tables(SICTrainable(TINY, level_film=True, inner_film=True))
    with torch.no_grad():
        net.model.level_film.inner_scale.zero_()
        net.model.level_film.inner_shift.zero_()
    export_weights(net, tmp_path / "inner.npz", {})
    outer_only = SICTrainable(TINY, level_film=True)
    outer_only.load_state_dict({k: v for k, v in net.state_dict().items() if k not in INNER})
    export_weights(outer_only, tmp_path / "outer.npz", {})
    inner, outer = Codec.load(tmp_path / "inner.npz"), Codec.load(tmp_path / "outer.npz")
    assert inner.model_id != outer.model_id
    image = synthetic_image(72, 100, seed=1)
    a, b = inner.encode(image), outer.encode(image)
    assert a[:20] == b[:20] and a[32:] == b[32:]  # only the model id (and the header CRC) differ
    for kw in (dict(level=1), dict(level=4, spread=0.0), dict(), dict(level=2, seed=3, spread=2.0)):
        assert np.array_equal(np.asarray(inner.decode(a, **kw)[0]), np.asarray(outer.decode(b, **kw)[0])), kw


def _forge(src, dst, edit=None, form=None, graph_of=None):
    """``src`` with its state edited, its format set, or its g_s graph replaced by that of ``graph_of``,
    written self-consistently (the model id recomputed, as a forger would)."""
    weights = load_weights(src)
    state = dict(weights.model_state)
    if edit:
        edit(state)
    graphs, keys = dict(weights.graphs), dict(weights.graph_keys)
    if graph_of is not None:
        other = load_weights(graph_of)
        graphs["g_s"], keys["g_s"] = other.graphs["g_s"], other.graph_keys["g_s"]
    model_id = compute_model_id(weights.config, state, weights.z_frequencies, weights.scale_table,
                                graph_digest(graphs, keys, weights.scale_offset))
    forged = dataclasses.replace(weights, model_state=state, model_id=model_id, graphs=graphs, graph_keys=keys)
    if form is None:
        write_weights(dst, forged)
    else:
        import sicc.model.weights as module

        original = module.weights_format
        module.weights_format = lambda state: form
        try:
            write_weights(dst, forged)
        finally:
            module.weights_format = original
    return dst


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inner")
    net = _random_tables(SICTrainable(TINY, level_film=True, inner_film=True))
    export_weights(net, folder / "inner.npz", {})
    outer = SICTrainable(TINY, level_film=True)
    outer.load_state_dict({k: v for k, v in net.state_dict().items() if k not in INNER})
    export_weights(outer, folder / "outer.npz", {})
    return folder


BAD = {
    "inner tables in a -4 file": (dict(form=LEVEL_FILM_WEIGHTS_FORMAT), "with inner level tables"),
    "a -5 file without them": (dict(edit=lambda s: [s.pop(INNER_SCALE_KEY), s.pop(INNER_SHIFT_KEY)],
                                    form=INNER_FILM_WEIGHTS_FORMAT), "without its inner level tables"),
    "one inner table": (dict(edit=lambda s: s.pop(INNER_SHIFT_KEY), form=INNER_FILM_WEIGHTS_FORMAT),
                        "has level_film.inner_scale but not level_film.inner_shift"),
    "wrong hidden": (dict(edit=lambda s: s.update({INNER_SCALE_KEY: s[INNER_SCALE_KEY][:, :, :-1].copy(),
                                                   INNER_SHIFT_KEY: s[INNER_SHIFT_KEY][:, :, :-1].copy()})),
                     "not float32"),
    "not finite": (dict(edit=lambda s: s[INNER_SHIFT_KEY].__setitem__((0, 0, 0), np.inf)), "not finite"),
    "too many layers": (dict(edit=lambda s: s.update({INNER_SCALE_KEY: np.zeros((16, 9, TINY.hidden), np.float32),
                                                       INNER_SHIFT_KEY: np.zeros((16, 9, TINY.hidden), np.float32)})),
                        "1..8"),
    "without the input tables": (dict(edit=lambda s: [s.pop("level_film.scale"), s.pop("level_film.shift")],
                                      form=INNER_FILM_WEIGHTS_FORMAT), "level tables"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inner_tables_are_refused_in_one_line(exported, tmp_path, case):
    kw, message = BAD[case]
    bad = _forge(exported / "inner.npz", tmp_path / "bad.npz", **kw)
    with pytest.raises(WeightsError) as caught:
        load_weights(bad)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_g_s_graph_that_does_not_take_the_rows_is_refused(exported, tmp_path):
    plain = _forge(exported / "inner.npz", tmp_path / "plain.npz", graph_of=exported / "outer.npz")
    with pytest.raises(WeightsError, match="its g_s graph is refused: inputs \\['input'\\]"):
        load_weights(plain)
    extra = _forge(exported / "outer.npz", tmp_path / "extra.npz", graph_of=exported / "inner.npz")
    with pytest.raises(WeightsError, match="its g_s graph is refused: inputs"):
        load_weights(extra)
    weights = load_weights(exported / "inner.npz")
    shapes = {k: v.shape for k, v in weights.model_state.items()}
    good = {GAIN_INPUT: (3, TINY.hidden), SHIFT_INPUT: (3, TINY.hidden)}
    check_graph("g_s", weights.graphs["g_s"], TINY, weights.graph_keys["g_s"], shapes, good)
    with pytest.raises(GraphProblem, match="film_gain"):
        check_graph("g_s", weights.graphs["g_s"], TINY, weights.graph_keys["g_s"], shapes,
                    {GAIN_INPUT: (2, TINY.hidden), SHIFT_INPUT: (2, TINY.hidden)})


def test_an_inner_film_run_adds_zero_tables_and_trains_them_with_g_s_alone(tmp_path):
    first = _trainer(steps=3, ema=0.9, level_film=True, level_film_lr=40.0, loss=LossSettings(decoder_only=True))
    run(first, tmp_path / "a.pt", tmp_path / "a.jsonl", progress=False)
    state = load_checkpoint(tmp_path / "a.pt")
    assert not any(k in state["net"] for k in INNER)
    second = _trainer(seed=5, steps=4, ema=0.9, level_film=True, inner_film=True, level_film_lr=40.0,
                      loss=LossSettings(decoder_only=True))
    second.continue_from(state)
    assert second.optimizer_continued
    assert all(not second.net.state_dict()[k].any() for k in INNER)
    assert {id(p) for p in second.optimizer.param_groups[1]["params"]} >= {
        id(second.net.model.level_film.inner_scale), id(second.net.model.level_film.inner_shift)}
    changed = changed_by_run(second, tmp_path / "b.pt")
    assert set(INNER) <= changed
    assert all(k.startswith(("model.g_s.", "model.level_film.")) for k in changed)
    saved = load_checkpoint(tmp_path / "b.pt")
    assert saved["settings"]["inner_film"] is True and all(k in saved["ema"] for k in INNER)
    third = _trainer(seed=6, steps=5, level_film=True, inner_film=True, level_film_lr=40.0,
                     loss=LossSettings(decoder_only=True))
    third.load_state_dict(saved)  # a resume keeps the inner tables' moments
    params = dict(third.net.named_parameters())
    for key in INNER:
        moments = third.optimizer.state[params[key]]
        assert float(moments["step"]) == 4 and moments["exp_avg_sq"].any(), key


def test_the_run_command_keeps_inner_tables_once_a_network_has_them(tmp_path, monkeypatch):
    from sicc.train import __main__ as cli

    seen = {}

    def fake_run(trainer, checkpoint, log_path, **kw):
        film = trainer.net.model.level_film
        seen.update(inner=film is not None and film.inner_scale is not None, setting=trainer.settings.inner_film)
        trainer.save_checkpoint(checkpoint)
        return {"stopped": "steps"}

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli, "load_folder", lambda *a, **k: [np.zeros((64, 64, 3), np.uint8)])
    monkeypatch.setattr("sicc.train.perceptual.LPIPSLoss", _L1Perceptual)
    run(_trainer(steps=1, level_film=True), tmp_path / "k.pt", tmp_path / "k.jsonl", progress=False)
    common = ["--batch", "2", "--crop", "64", "--steps", "1"]
    cli.main(["run", "--init", str(tmp_path / "k.pt"), "--inner-film", *common, "--out", str(tmp_path / "t")])
    assert seen == {"inner": True, "setting": True}
    cli.main(["run", "--init", str(tmp_path / "t" / "checkpoint.pt"), *common, "--out", str(tmp_path / "u")])
    assert seen == {"inner": True, "setting": True}
    with pytest.raises(SystemExit, match="inner level tables"):
        cli.main(["run", "--init", str(tmp_path / "t" / "checkpoint.pt"), "--no-inner-film", *common,
                  "--out", str(tmp_path / "v")])
    cli.main(["export", str(tmp_path / "t" / "checkpoint.pt"), "-o", str(tmp_path / "w.npz")])
    assert load_weights(tmp_path / "w.npz").model_state[INNER_SCALE_KEY].shape == (TINY.levels, 3, TINY.hidden)


def test_widening_keeps_the_inner_tables_and_the_function():
    from sicc.train.widen import widen

    net = _random_tables(SICTrainable(TINY, level_film=True, inner_film=True))
    wide = widen(net, TINY.hidden + 4)
    assert wide.model.level_film.inner_scale.shape == (TINY.levels, 3, TINY.hidden + 4)
    latent = torch.round(torch.randn(1, TINY.latent, 4, 4) * 3)
    with torch.no_grad():
        assert torch.allclose(wide.model.synthesize(latent, 3), net.model.synthesize(latent, 3), atol=1e-5)
