"""The codec: image -> integer latents -> coded levels -> container bytes, and back.

``Codec`` ties the layers together and is what the public API, the CLI, the
Pillow plugin and the benchmark call. Only this module knows all of them. It
runs on numpy and onnxruntime: the transforms are ONNX graphs
(:mod:`sicc.model.transforms`), the probability model is exact integer
arithmetic (:mod:`sicc.model.probability`); torch is for training only.
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from . import container, tiling
from .coding import Y_BOUND, CodingError, decode_categorical, decode_gaussian, encode_categorical, encode_gaussian
from .errors import (ArgumentError, CorruptError, CorruptLevelWarning, NoLevelWarning, SiccWarning, TruncatedFileWarning,
                     UnsupportedError, WeightsError)
from .image_io import load_rgb
from .model.config import default_spread
from .model.geometry import centres, hyper_size, image_offset, latent_size, pad_image
from .model.level_film import film_transform, level_film
from .model.probability import Z_BOUND, ProbabilityModel, single_threaded_blas, z_from_symbols, z_symbols
from .model.transforms import Transforms
from .model.weights import ModelWeights, default_weights_path, load_weights
from .tiling import Progress, ordered_map, tiled_analysis, tiled_hyper_analysis, tiled_synthesis_image

LATENT_DTYPE = np.int16
"""Integer latents are stored in 16 bits (|y| <= Y_BOUND): half the memory of float32."""


def _seed_generator(seed: int, sample: int) -> np.random.Generator:
    """One independent, platform-independent stream per (seed, sample)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(sample,))))


class Codec:
    """One loaded model and everything needed to code with it.

    ``threads`` (encode/decode) is the number of tiles transformed side by side
    (default: the CPUs this process may use, at most 4); it never changes the
    result. ``progress(stage, done, total)`` is called after each level and
    each tile, for a progress display on long images.
    """

    _cache: dict[tuple, "Codec"] = {}
    _cache_lock = threading.Lock()

    def __init__(self, weights: ModelWeights):
        self.weights = weights
        self.config = weights.config
        self.model_id = weights.model_id
        try:
            self.probability = ProbabilityModel(self.config, weights.model_state, weights.z_frequencies,
                                                weights.scale_table, weights.scale_offset)
            self._probe_probability()
        except (KeyError, ValueError, IndexError) as exc:
            raise WeightsError(f"weights do not describe a sicc model ({type(exc).__name__}: {exc})") from None
        self.transforms = Transforms(weights)
        self.level_film = level_film(weights.model_state)  # None: g_s sees the latent as it is

    def _probe_probability(self) -> None:
        """The probability model on a 64x64 image's latent, every level: tensors whose shapes do not fit
        together (a weights file whose id was forged to match them) fail here, at load, with
        ValueError, not in the middle of a file."""
        g = self.config.group_size
        height, width = latent_size(64, 64)  # one hyper position
        base = self.probability.hyper_base(np.zeros((self.config.hyper, *hyper_size(64, 64)), dtype=np.int32))
        y = np.zeros((self.config.latent, height, width), dtype=LATENT_DTYPE)
        for index in range(self.config.levels):
            means, scales = self.probability.level_parameters(y, base, index)
            if means.shape != (g, height, width) or scales.shape != (g, height, width):
                raise ValueError(f"level {index + 1} parameters have shape {means.shape}, not {(g, height, width)}")

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Codec":
        """The codec of a weights file (default: the shipped model), cached per path and file
        version (a file replaced on disk is loaded again).

        Raises OSError when the file cannot be read, WeightsError when it is not valid."""
        resolved = Path(path).resolve() if path else default_weights_path()
        status = resolved.stat()
        key = (str(resolved), status.st_ino, status.st_size, status.st_mtime_ns)
        with cls._cache_lock:
            if key not in cls._cache:
                cls._cache[key] = cls(load_weights(resolved))
            return cls._cache[key]

    @classmethod
    def default(cls) -> "Codec":
        return cls.load(None)

    # -- encode ----------------------------------------------------------------------
    def analyse(self, pixels: np.ndarray, threads: int | None = None,
                progress: Progress | None = None, centred: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Integer latents (z, y) of an (H, W, 3) uint8 image on its canvas (``centred``: in the
        middle of a larger one), clamped to the codable ranges: z as (hyper, h/4, w/4) int32, y as
        (latent, h, w) int16."""
        threads = threads or tiling.default_threads()
        y = tiled_analysis(self.transforms.g_a, pad_image(pixels, centred), threads=threads, progress=progress)
        z = tiled_hyper_analysis(self.transforms.h_a, y, threads=threads)
        if not (np.isfinite(y).all() and np.isfinite(z).all()):  # only weights that are not a trained model
            raise WeightsError("the model's analysis gives values that are not finite numbers (damaged weights?)")
        z_int = np.clip(np.rint(z), -Z_BOUND, Z_BOUND).astype(np.int32)
        y_int = np.empty(y.shape, dtype=LATENT_DTYPE)
        g = self.config.group_size
        for c in range(0, y.shape[0], g):  # a level at a time: no second full-size float temporary
            y_int[c : c + g] = np.clip(np.rint(y[c : c + g]), -Y_BOUND, Y_BOUND)
        return z_int, y_int

    def encode(self, image, levels: int | None = None, keep_metadata: bool = True,
               max_pixels: int | None = None, threads: int | None = None,
               progress: Progress | None = None, bpp: float | None = None, max_bytes: int | None = None,
               at_least_one: bool = False) -> bytes:
        """Encode an image (path, PIL image, RGB uint8 array) into a SIC file with
        ``levels`` levels (default: all), or the most levels that fit ``bpp`` bits per pixel or
        ``max_bytes`` bytes (the rule of :func:`sicc.truncate`: at least one level, else an error, or
        with ``at_least_one`` level 1 and a warning).
        Images over ``max_pixels`` (default: ``sicc.MAX_IMAGE_PIXELS``, the limit the decoder
        applies) are refused."""
        if sum(x is not None for x in (levels, bpp, max_bytes)) > 1:
            raise ValueError("give at most one of levels, bpp, max_bytes")
        if bpp is not None or max_bytes is not None:
            from .stream import truncate

            full = self.encode(image, keep_metadata=keep_metadata, max_pixels=max_pixels, threads=threads,
                               progress=progress)
            return truncate(full, bpp=bpp, max_bytes=max_bytes, max_pixels=max_pixels, at_least_one=at_least_one)
        levels = self.config.levels if levels is None else levels
        if not 0 <= levels <= self.config.levels:
            raise ArgumentError(f"levels must be in 0..{self.config.levels}")
        threads = threads or tiling.default_threads()
        with self._preparing("g_a" if threads > 1 else None):  # built on another core while the image is read
            rgb = load_rgb(image, container.pixel_limit(max_pixels))
            return self._encode_levels(rgb, levels, keep_metadata, threads, progress)

    def _encode_levels(self, rgb, levels: int, keep_metadata: bool, threads: int,
                       progress: Progress | None) -> bytes:
        height, width = rgb.pixels.shape[:2]
        centred = centres(height, width)  # a small image: no pixel at the canvas border (formats/sic-v1.md)
        z_int, y_int = self.analyse(rgb.pixels, threads, progress, centred)
        hyper_bytes = encode_categorical(z_symbols(z_int), self.weights.z_frequencies)
        g = self.config.group_size

        def code_level(level: int) -> bytes:
            # Every level before ``level`` is known here, so the levels are coded independently,
            # side by side (the exact parameter products release the GIL); same bytes at any count.
            means, scales = self.probability.level_parameters(y_int, base, level)
            return encode_gaussian(y_int[level * g : (level + 1) * g], means, scales)

        coded = []
        with single_threaded_blas():
            base = self.probability.hyper_base(z_int)
            for data in ordered_map(code_level, range(levels), threads):
                coded.append(data)
                if progress:
                    progress("levels", len(coded), levels)
        flags = (container.FLAG_GRAYSCALE if rgb.grayscale else 0) | (container.FLAG_CENTRED if centred else 0)
        header = container.Header(width, height, self.model_id, self.config.levels, flags)
        return container.write(
            header, hyper_bytes, coded,
            icc_profile=rgb.icc_profile if keep_metadata else None,
            exif=rgb.exif if keep_metadata else None,
        )

    # -- decode ----------------------------------------------------------------------
    def parse(self, source, strict: bool = False, max_pixels: int | None = None) -> container.SicFile:
        """Read (bytes, a path or a binary file, bounded), parse and check that this codec's model
        made the file, within the pixel budget; warn about cut or damaged levels."""
        limit = container.pixel_limit(max_pixels)
        parsed = container.parse(container.read(source, limit), max_pixels=limit, strict=strict)
        if parsed.header.model_id != self.model_id:
            raise UnsupportedError(
                f"file was encoded with model {parsed.header.model_id.hex()}, "
                f"this sicc has model {self.model_id.hex()}")
        if parsed.header.model_levels != self.config.levels:  # the same id: a damaged or forged header
            raise UnsupportedError(
                f"file declares {parsed.header.model_levels} levels for model {self.model_id.hex()}, "
                f"which has {self.config.levels}")
        if parsed.truncated:
            warnings.warn(f"file is truncated inside level {len(parsed.levels) + 1}; "
                          f"decoding the {len(parsed.levels)} complete levels", TruncatedFileWarning, stacklevel=3)
        if parsed.corrupt_level is not None:
            warnings.warn(f"level {parsed.corrupt_level} is corrupt ({parsed.corrupt_reason}); "
                          f"decoding the {len(parsed.levels)} levels before it", CorruptLevelWarning, stacklevel=3)
        return parsed

    def decode_latents(self, parsed: container.SicFile, level: int, strict: bool = True,
                       progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hyper base features and the integer y of levels 1..``level`` (shape (level*G, h, w) int16).

        A level that passes its CRC but does not decode (a forged payload) is an
        error when ``strict``; otherwise it is treated like a CRC failure: a
        warning, and the levels before it are returned.
        """
        with single_threaded_blas():
            return self._decode_latents(parsed, level, strict, progress)

    def _decode_latents(self, parsed: container.SicFile, level: int, strict: bool,
                        progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
        centred = bool(parsed.header.flags & container.FLAG_CENTRED)
        lh, lw = latent_size(parsed.header.height, parsed.header.width, centred)
        zh, zw = hyper_size(parsed.header.height, parsed.header.width, centred)
        try:
            symbols = decode_categorical(parsed.hyper, self.weights.z_frequencies, zh * zw)
        except CodingError as exc:
            raise CorruptError(f"hyperprior is corrupt: {exc}") from None
        base = self.probability.hyper_base(z_from_symbols(symbols, zh, zw))
        g = self.config.group_size
        y = np.zeros((level * g, lh, lw), dtype=LATENT_DTYPE)
        for index in range(level):
            means, scales = self.probability.level_parameters(y, base, index)
            try:
                decoded = decode_gaussian(parsed.levels[index], means, scales)
            except CodingError as exc:
                if strict:
                    raise CorruptError(f"level {index + 1} is corrupt: {exc}") from None
                warnings.warn(f"level {index + 1} is corrupt ({exc}); decoding the {index} levels before it",
                              CorruptLevelWarning, stacklevel=4)
                return base, y[: index * g].copy()
            y[index * g : (index + 1) * g] = decoded
            if progress:
                progress("levels", index + 1, level)
        return base, y

    def complete_latent(self, coded: np.ndarray, base: np.ndarray, spread: float,
                        rng: np.random.Generator | None) -> np.ndarray:
        """Append sampled levels: y_e = round(mu + spread * u), u ~ U(-1, 1) from ``rng``."""
        g = self.config.group_size
        y = np.zeros((self.config.latent,) + coded.shape[1:], dtype=LATENT_DTYPE)
        y[: coded.shape[0]] = coded
        with single_threaded_blas():
            for index in range(coded.shape[0] // g, self.config.levels):
                means, _ = self.probability.level_parameters(y, base, index)
                values = means if spread == 0 or rng is None else means + spread * rng.uniform(-1.0, 1.0, means.shape)
                y[index * g : (index + 1) * g] = np.clip(np.rint(values), -Y_BOUND, Y_BOUND)
        return y

    def synthesize(self, y: np.ndarray, height: int, width: int, threads: int | None = None,
                   progress: Progress | None = None, centred: bool = False, level: int | None = None) -> Image.Image:
        """The RGB image of a complete integer latent (latent, h, w) completed from the first ``level``
        coded levels (default: all of them): its canvas cropped to the ``height`` x ``width`` image
        (in the middle of the canvas when ``centred``). Weights with level tables scale and shift the
        latent for that level before g_s (:mod:`sicc.model.level_film`)."""
        level = self.config.levels if level is None else level
        g_s = film_transform(self.transforms.g_s, self.level_film, level)
        return tiled_synthesis_image(g_s, y, height, width, threads=threads or tiling.default_threads(),
                                     progress=progress, offset=image_offset(height, width, centred))

    def decode(self, source, samples: int = 1, seed: int = 0, spread: float | None = None,
               level: int | None = None, strict: bool = False, max_pixels: int | None = None,
               threads: int | None = None, progress: Progress | None = None) -> list[Image.Image]:
        """Decode ``samples`` reconstructions from the first ``level`` levels (default: all present)
        of ``source`` (the file's bytes, a path or a binary file object, read in bounded pieces).

        Missing levels are sampled with ``spread`` (0: the deterministic mean decode);
        sample k uses the random stream (seed, k), so results repeat exactly. All samples are held
        at once: :meth:`decode_iter` gives them one at a time.
        """
        return list(self.decode_iter(source, samples=samples, seed=seed, spread=spread, level=level, strict=strict,
                                     max_pixels=max_pixels, threads=threads, progress=progress))

    def decode_iter(self, source, samples: int = 1, seed: int = 0, spread: float | None = None,
                    level: int | None = None, strict: bool = False, max_pixels: int | None = None,
                    threads: int | None = None, progress: Progress | None = None) -> Iterator[Image.Image]:
        """The samples of :meth:`decode`, synthesized one at a time as the iterator is advanced, so
        a caller that writes each one before taking the next holds one image, not ``samples``.

        The file is read, parsed and its levels range-decoded before this returns: every error
        and warning about the file comes from this call, not from the iteration."""
        if samples < 1:
            raise ValueError("samples must be at least 1")
        if seed < 0:
            raise ValueError("seed must be a non-negative integer")
        spread = default_spread(spread, samples)
        if not (spread >= 0 and np.isfinite(spread)):
            raise ValueError("spread must be a finite number >= 0")
        parsed = self.parse(source, strict=strict, max_pixels=max_pixels)
        available = len(parsed.levels)
        level = available if level is None else level
        if not 0 <= level <= available:
            raise ArgumentError(f"level {level} is not in the file (it holds levels "
                                f"{'1..' + str(available) if available else 'none'})")
        threads = threads or tiling.default_threads()
        with self._preparing("g_s" if threads > 1 else None):  # built while the levels are range-decoded
            return self._decode_parsed(parsed, level, samples, seed, spread, strict, threads, progress)

    @contextmanager
    def _preparing(self, name: str | None):
        """Build the session of transform ``name`` on another thread while the block runs, and
        join that thread before leaving, whether the block succeeds, fails or is interrupted:
        a call never returns (or raises) with a thread still inside onnxruntime."""
        thread = self.transforms.prepare(name) if name else None
        try:
            yield
        finally:
            if thread is not None:
                thread.join()

    def _decode_parsed(self, parsed: container.SicFile, level: int, samples: int, seed: int, spread: float,
                       strict: bool, threads: int, progress: Progress | None) -> list[Image.Image]:
        base, coded = self.decode_latents(parsed, level, strict=strict, progress=progress)
        level = coded.shape[0] // self.config.group_size
        if level == 0:
            warnings.warn("no level decoded: the whole image is sampled from the hyperprior alone "
                          "and will look like noise", NoLevelWarning, stacklevel=3)
        elif samples > 1 and (level == self.config.levels or spread == 0):
            why = ("spread 0 samples nothing" if spread == 0 else
                   "every level is decoded, so nothing is sampled (decode fewer levels for different samples)")
            warnings.warn(f"all {samples} samples are identical: {why}", SiccWarning, stacklevel=3)
        deterministic = spread == 0 or level == self.config.levels
        return self._samples(parsed, coded, base, samples, seed, spread, deterministic, threads, progress)

    def _samples(self, parsed: container.SicFile, coded: np.ndarray, base: np.ndarray, samples: int, seed: int,
                 spread: float, deterministic: bool, threads: int, progress: Progress | None) -> Iterator[Image.Image]:
        width, height = parsed.header.width, parsed.header.height
        centred = bool(parsed.header.flags & container.FLAG_CENTRED)
        level = coded.shape[0] // self.config.group_size  # the levels decoded, which g_s is told
        first = None
        for k in range(samples):
            if deterministic and first is not None:
                yield first.copy()  # nothing is sampled: the same pixels, synthesized once
                continue
            y = self.complete_latent(coded, base, spread, None if deterministic else _seed_generator(seed, k))
            image = self._with_metadata(self.synthesize(y, height, width, threads, progress, centred, level), parsed)
            del y
            if deterministic:
                first = image
            yield image
            del image  # not held while the next sample is synthesized

    @staticmethod
    def _with_metadata(image: Image.Image, parsed: container.SicFile) -> Image.Image:
        if parsed.header.flags & container.FLAG_GRAYSCALE:
            image = image.convert("L")
        if parsed.icc_profile:
            image.info["icc_profile"] = parsed.icc_profile
        if parsed.exif:
            image.info["exif"] = parsed.exif
        return image
