"""The analysis and synthesis transforms (g_a, h_a, g_s) as ONNX graphs run by onnxruntime.

One inference session per transform, created on first use and reused for every
tile and file. Each session is single-threaded and never busy-waits
(``allow_spinning`` off): parallelism comes from running tiles side by side
(:mod:`sicc.tiling`), so the arithmetic of a tile, and with it every pixel,
is the same at any thread count, and a loaded machine is not fought over by
spinning workers.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import WeightsError
from .weights import ModelWeights


def _session_options(weights: ModelWeights, name: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 4  # fatal only: a failure is raised (one line), never logged in colour
    options.enable_cpu_mem_arena = True  # its memory patterns peak lower than plain malloc (measured at 4K)
    keys = weights.graph_keys[name]
    buffers = [np.ascontiguousarray(weights.model_state[k], dtype="<f4").reshape(-1).view(np.uint8) for k in keys]
    options.add_external_initializers_from_files_in_memory(keys, buffers, [b.size for b in buffers])
    return options, buffers


_RUN_OPTIONS = None


def _quiet_onnxruntime(ort) -> None:
    """onnxruntime's process-wide logger prints failures as coloured multi-line text on stderr; sicc
    reports them itself, in one line (issue #47)."""
    ort.set_default_logger_severity(4)


def _run_options():
    global _RUN_OPTIONS
    if _RUN_OPTIONS is None:
        import onnxruntime as ort

        options = ort.RunOptions()
        options.log_severity_level = 4
        _RUN_OPTIONS = options
    return _RUN_OPTIONS


def _ort_reason(text: str) -> str:
    """The useful part of an onnxruntime error: its status message, without the source path."""
    for marker in ("Status Message:", "FAIL :", "] :"):
        if marker in text:
            text = text.split(marker, 1)[1].strip()
    if " was false. " in text:  # "file.h:91 function(...) condition was false. What went wrong."
        text = text.split(" was false. ", 1)[1]
    return text[:300]


class Transforms:
    """g_a (image -> y), h_a (y -> z) and g_s (y -> image) of one weights file."""

    def __init__(self, weights: ModelWeights):
        self.weights = weights
        self._sessions: dict = {}
        self._lock = threading.Lock()

    def session(self, name: str):
        with self._lock:
            if name not in self._sessions:
                import onnxruntime as ort

                _quiet_onnxruntime(ort)

                options, buffers = _session_options(self.weights, name)
                try:
                    session = ort.InferenceSession(self.weights.graphs[name], options,
                                                   providers=["CPUExecutionProvider"])
                except Exception as exc:  # onnxruntime's own exception types: a bad graph is bad weights
                    raise WeightsError(f"the {name} graph of the weights file does not load: "
                                       f"{type(exc).__name__}: {exc}") from None
                self._sessions[name] = (session, buffers)  # the buffers live as long as the session
            return self._sessions[name][0]

    def prepare(self, name: str) -> threading.Thread | None:
        """Build the session of ``name`` in a background thread (None if it is built already);
        the caller joins it before it returns, on failure too (``Codec`` does, in ``finally``).

        onnxruntime builds a session without holding the GIL, so the build overlaps work on
        the calling thread (the decoder builds g_s while it range-decodes the levels). A build
        that fails is not cached: the first real use builds it again and raises the error.

        The thread is not a daemon: a process must never reach interpreter shutdown while a
        thread is inside onnxruntime, or the C++ runtime aborts it at exit ("terminate called
        without an active exception", exit 134). A non-daemon thread is joined by Python before
        shutdown, so even a caller that skips the join (Ctrl-C in the wrong place) exits cleanly."""
        with self._lock:
            if name in self._sessions:
                return None

        def build():
            try:
                self.session(name)
            except Exception:  # noqa: BLE001 - reported by the first use of the session instead
                pass

        thread = threading.Thread(target=build, name=f"sicc-prepare-{name}", daemon=False)
        thread.start()
        return thread

    def run(self, name: str, x: np.ndarray, feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """One transform on a (1, C, h, w) float32 array (thread-safe: tiles run concurrently);
        ``feeds``: the graph's other inputs by name (g_s of weights with inner level tables).

        onnxruntime's own failures become one-line errors: memory it cannot allocate is a
        MemoryError, anything else a graph that does not compute what the runtime expects
        (WeightsError)."""
        session = self.session(name)
        try:
            inputs = {"input": np.ascontiguousarray(x, dtype=np.float32)}
            inputs.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in (feeds or {}).items()})
            return session.run(None, inputs, _run_options())[0]
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # onnxruntime's exception types live in its compiled module
            text = " ".join(str(exc).split())
            if "alloc" in text.lower():
                raise MemoryError(f"onnxruntime could not allocate memory for {name}") from None
            raise WeightsError(f"the {name} graph of the weights file failed: {_ort_reason(text)}") from None

    def g_a(self, x: np.ndarray) -> np.ndarray:
        return self.run("g_a", x)

    def h_a(self, x: np.ndarray) -> np.ndarray:
        return self.run("h_a", x)

    def g_s(self, x: np.ndarray, feeds: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """g_s; ``feeds``: the inner level rows its graph takes (:meth:`LevelFilm.inner_rows`)."""
        return self.run("g_s", x, feeds)
