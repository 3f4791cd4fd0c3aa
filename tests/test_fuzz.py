"""Fuzzing (issue #6): a short run of tests/fuzz.py, a replay of every saved crashing input in
tests/regressions/, and checks that the harness really catches what it is meant to catch.

The long run is `make fuzz` (python -m tests.fuzz --seconds 1800).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import sicc
from tests import fuzz
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)

FUZZ_SECONDS = float(os.environ.get("SICC_FUZZ_SECONDS", "20"))
SHIPPED_FUZZ_SECONDS = float(os.environ.get("SICC_SHIPPED_FUZZ_SECONDS", "15"))
FUZZ_SEED = int(os.environ.get("SICC_FUZZ_SEED", "20260"))


def test_short_fuzz_run_finds_no_crash(tiny_weights, tmp_path):
    """Mutated real files through info, truncate and decode, in the API and through the command's
    writers (info, truncate -o, decode -o; mutated images through encode -o): only successes and
    SiccErrors, whole outputs or none, and the mutations reach the deep checks (header CRC behind
    forged fields, the range decoder, its exactness check)."""
    report = fuzz.fuzz(FUZZ_SECONDS, seed=FUZZ_SEED, save_dir=tmp_path, weights=tiny_weights)
    print(report.summary())
    assert not report.crashes, report.summary()
    assert report.executions > 10 * FUZZ_SECONDS / 3, report.summary()
    reached = " | ".join(report.messages)
    for fragment in ("NotSicError", "header is corrupt", "HYPR chunk is corrupt", "CorruptLevelWarning",
                     "TruncatedFileWarning", "ImageTooLargeError", "hyperprior is corrupt",
                     "range decoder ran past the end", "encoded with model", "version N is not supported",
                     "encode exit 0", "encode exit 3", "weights: WeightsError"):
        assert fragment in reached, f"the fuzzer never reached {fragment!r}\n{report.summary()}"
    assert list(tmp_path.iterdir()) == []


def test_short_fuzz_run_of_the_shipped_model(tmp_path):
    """The same with the shipped model, whose real latents give the range decoder real work."""
    report = fuzz.fuzz(SHIPPED_FUZZ_SECONDS, seed=FUZZ_SEED + 1, save_dir=tmp_path, weights="shipped")
    print(report.summary())
    assert not report.crashes, report.summary()
    assert report.executions > 5 * SHIPPED_FUZZ_SECONDS / 3, report.summary()
    reached = " | ".join(report.messages)
    for fragment in ("hyperprior is corrupt", "CorruptLevelWarning", "encode exit 0"):
        assert fragment in reached, f"the fuzzer never reached {fragment!r}\n{report.summary()}"
    assert list(tmp_path.iterdir()) == []


REGRESSION_FILES = sorted([*fuzz.REGRESSIONS.glob("*.sic"), *fuzz.REGRESSIONS.glob("*.png"),
                           *fuzz.REGRESSIONS.glob("*.npz")])


@pytest.mark.parametrize("path", REGRESSION_FILES, ids=[p.name for p in REGRESSION_FILES])
def test_saved_inputs_replay_cleanly(path, tiny_codec, tiny_weights):
    """Every input the fuzzer (or a bug report) found: now only success or a SiccError, quickly."""
    fuzz.replay(tiny_codec, path, weights=tiny_weights)


def test_fuzzer_says_what_it_needs(tmp_path):
    """Without the dev extras (torch here) the fuzzer names what is missing and how to install it."""
    code = "import sys; sys.modules['torch'] = None; from tests import fuzz; sys.exit(fuzz.main(['--seconds', '1']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=fuzz.REPO)
    assert result.returncode == 2, result.stderr
    import importlib.util

    missing = ", ".join(["torch"] + ([] if importlib.util.find_spec("onnx") else ["onnx"]))  # the .[test] install
    assert result.stderr.strip() == (f'python -m tests.fuzz needs the dev extras (missing: {missing}); from the '
                                     'repository root: pip install -e ".[dev]"')


def test_cli_checks_catch_wrong_outputs_and_codes(small_file, tiny_codec, tiny_weights, tmp_path):
    """exercise_cli flags a command whose pixels differ from the API's, and an exit code that is
    not the expected one."""
    info = sicc.info(small_file)
    options = dict(samples=1, seed=0, spread=0.0, level=None, strict=False)
    images = tiny_codec.decode(small_file, **options)
    fuzz.exercise_cli(tiny_weights, tmp_path, small_file, info, images, options, None)  # agrees
    wrong = [Image.new("RGB", images[0].size)]
    with pytest.raises(fuzz.Crash, match="other pixels"):
        fuzz.exercise_cli(tiny_weights, tmp_path, small_file, info, wrong, options, None)
    with pytest.raises(fuzz.Crash, match="exit 0"):  # the API failed, the command did not
        fuzz.exercise_cli(tiny_weights, tmp_path, small_file, info, sicc.CorruptError("x"), options, None)
    with pytest.raises(fuzz.Crash, match=r"exit 2 \(expected \(0,\)\)"):
        fuzz._run_cli("usage", ["decode", tmp_path / "missing.sic"], tmp_path, (0,), [])


def test_regression_folder_is_not_empty():
    assert len(REGRESSION_FILES) >= 6


# -- the harness itself ------------------------------------------------------------------------
class FakeCodec:
    """Stands in for Codec.decode to check that exercise() classifies outcomes."""

    def __init__(self, behaviour):
        self.behaviour = behaviour

    def decode(self, data, **kwargs):
        return self.behaviour(data)


def test_exercise_flags_foreign_exceptions_and_wrong_results(small_file, tiny_codec):
    # a whole file: nothing but, when two samples are drawn, the note that they are identical
    assert all("samples are identical" in seen for seen in fuzz.exercise(tiny_codec, small_file))

    def raise_type_error(data):
        raise TypeError("boom")

    def raise_memory_error(data):
        raise MemoryError()

    def wrong_size(data):
        return [Image.new("RGB", (3, 3))]

    def corrupt(data):
        raise sicc.CorruptError("level 2 is\ncorrupt")

    for behaviour, kind in ((raise_type_error, "exception"), (raise_memory_error, "memory"),
                            (wrong_size, "property"), (corrupt, "message")):
        with pytest.raises(fuzz.Crash) as crash:
            fuzz.exercise(FakeCodec(behaviour), small_file)
        assert crash.value.kind == kind


def test_exercise_flags_foreign_warnings(small_file):
    def warns(data):
        import warnings

        warnings.warn("overflow encountered", RuntimeWarning)
        return [Image.new("RGB", (100, 72))]

    with pytest.raises(fuzz.Crash, match="RuntimeWarning"):
        fuzz.exercise(FakeCodec(warns), small_file)


def test_replay_stops_a_hang(tmp_path, small_file):
    path = tmp_path / "slow.sic"
    path.write_bytes(small_file)

    def hang(data):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pass

    start = time.monotonic()
    with pytest.raises(fuzz.Crash, match="more than"):
        fuzz.replay(FakeCodec(hang), path, seconds=0.5)
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("script,kind", [
    ("print('{\"ready\": true}', flush=True); import time; time.sleep(60)", "hang"),
    ("print('{\"ready\": true}', flush=True); import os; os.abort()", "died"),
], ids=["hang", "died"])
def test_parent_catches_hangs_and_dead_workers(script, kind, tmp_path):
    """A worker that stops answering or dies is a crash of the input it was running."""
    report = fuzz.FuzzReport()
    crashes = []
    with open(tmp_path / "err", "w+b") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=err)
        try:
            fatal = fuzz._watch(proc, report, {"deadline": time.monotonic() + 30}, hang_seconds=1.0,
                                on_crash=lambda c, d: crashes.append(c), err=err)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
    assert fatal is not None and fatal["kind"] == kind


def test_memory_cap_turns_a_huge_allocation_into_memory_error():
    """The worker's RLIMIT_AS cap makes a runaway allocation fail (and be reported) rather than
    exhaust the machine."""
    resource = pytest.importorskip("resource")
    code = (
        "import resource, numpy as np\n"
        "from tests.fuzz import _address_space\n"
        "limit = _address_space() + (256 << 20)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "try:\n    np.ones(1 << 30)\nexcept MemoryError:\n    print('capped')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=fuzz.REPO)
    assert result.stdout.strip() == "capped", result.stderr


def test_mutators_produce_varied_inputs(small_file):
    """Each mutator changes the file (most of the time) and none of them raises."""
    import random

    rng = random.Random(1)
    corpus = [small_file, small_file[:200]]
    changed = Counter()
    for mutator in fuzz.MUTATORS:
        for _ in range(30):
            out = mutator(rng, small_file, corpus)
            assert isinstance(out, bytes)
            changed[mutator.__name__] += out != small_file
    assert all(count >= 10 for count in changed.values()), changed
    forged = fuzz.forge_header(small_file, width=7)
    assert sicc.info(forged).width == 7  # the CRC was recomputed: the forgery passes the header check
    assert np.frombuffer(forged[12:16], "<u4")[0] == 7


def test_process_share_sees_aborts_and_exit_codes(tmp_path, tiny_weights, small_file, monkeypatch):
    """A command run as a whole process: an exit code outside the expected ones, or a death by a
    signal (an abort at exit is SIGABRT, 134), is a crash; the in-process runner could not see
    either."""
    (tmp_path / "in.sic").write_bytes(small_file)
    result = fuzz._run_cli("sicc info", ["info", tmp_path / "in.sic"], tmp_path, (0,), [], process=True)
    assert result.code == 0
    with pytest.raises(fuzz.Crash, match="exit 0 \\(expected \\(4,\\)\\)"):
        fuzz._run_cli("sicc info", ["info", tmp_path / "in.sic"], tmp_path, (4,), [], process=True)
    script = tmp_path / "sicc"
    script.mkdir()
    (script / "__init__.py").write_text("")
    (script / "cli.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGABRT)\n")
    monkeypatch.setattr(fuzz, "REPO", tmp_path)  # a `sicc` that aborts like the exit 134
    with pytest.raises(fuzz.Crash, match="the sicc process died"):
        fuzz._run_cli("sicc info", ["info", tmp_path / "in.sic"], tmp_path, (0, 4), [], process=True)


def test_weights_mutations_reach_the_checks(tiny_weights):
    """Mutated weights files, mostly made self-consistent (the model id recomputed): the loader's
    refusals are WeightsErrors, and some files still load and run."""
    import random

    from sicc.errors import WeightsError
    from sicc.model.weights import load_weights

    rng = random.Random(3)
    base = tiny_weights.read_bytes()
    outcomes = Counter()
    for k in range(40):
        path = tiny_weights.parent / f"mutated-{k}.npz"
        path.write_bytes(fuzz.mutate_weights(rng, base))
        try:
            load_weights(path)
            outcomes["loads"] += 1
        except WeightsError as exc:
            outcomes["graph" if "graph is refused" in str(exc) else "refused"] += 1
        path.unlink()
    assert outcomes["loads"] and outcomes["refused"], outcomes
