"""The codec: image -> integer latents -> coded levels -> container bytes, and back.

``Codec`` ties the layers together and is what the public API, the CLI, the
Pillow plugin and the benchmark call. Only this module knows all of them.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import container
from .coding import Y_BOUND, CodingError, decode_categorical, decode_gaussian, encode_categorical, encode_gaussian
from .errors import CorruptError, CorruptLevelWarning, TruncatedFileWarning, UnsupportedError
from .image_io import load_rgb
from .model.config import DEFAULT_SPREAD, SPATIAL_FACTOR
from .model.fixed_point import FixedPointEntropyModel
from .model.weights import SCALE_STEP_SHIFT, Z_BOUND, ModelWeights, default_weights_path, load_weights
from .tiling import tiled_analysis, tiled_hyper_analysis, tiled_synthesis_image

BAND_POSITIONS = 8192
"""Latent positions per band of the probability model. Its 3x3 context conv
unfolds nine values per input channel, so working memory is set by the band,
not by the image size."""

LATENT_DTYPE = torch.int16
"""Integer latents are stored in 16 bits (|y| <= Y_BOUND): half the memory of float32."""


def _pad_to_multiple(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    ph, pw = -h % SPATIAL_FACTOR, -w % SPATIAL_FACTOR
    return np.pad(pixels, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else pixels


def _rows_with_halo(x: torch.Tensor, r0: int, r1: int, halo: int) -> torch.Tensor:
    """Rows r0 - halo .. r1 + halo of (1, C, h, w) ``x`` in float64; zero rows past the edges,
    as a zero-padded convolution over the whole image would read."""
    top, bottom = max(r0 - halo, 0), min(r1 + halo, x.shape[2])
    band = x[:, :, top:bottom].double()
    missing_top, missing_bottom = halo - (r0 - top), halo - (bottom - r1)
    return F.pad(band, (0, 0, missing_top, missing_bottom)) if missing_top or missing_bottom else band


def _pixel_limit(max_pixels: int | None) -> int | None:
    """An explicit limit, else ``sicc.MAX_IMAGE_PIXELS`` read at call time (like Pillow's)."""
    if max_pixels is not None:
        return max_pixels
    from . import MAX_IMAGE_PIXELS

    return MAX_IMAGE_PIXELS


def _seed_generator(seed: int, sample: int) -> np.random.Generator:
    """One independent, platform-independent stream per (seed, sample)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(sample,))))


class Codec:
    """One loaded model and everything needed to code with it."""

    _cache: dict[str, "Codec"] = {}
    _cache_lock = threading.Lock()

    def __init__(self, weights: ModelWeights):
        self.weights = weights
        self.config = weights.config
        self.model = weights.build_model()
        self.exact = FixedPointEntropyModel(self.model)
        self.model_id = weights.model_id

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Codec":
        """The codec of a weights file (default: the shipped model), cached per path."""
        key = str(Path(path).resolve()) if path else str(default_weights_path())
        with cls._cache_lock:
            if key not in cls._cache:
                cls._cache[key] = cls(load_weights(Path(key)))
            return cls._cache[key]

    @classmethod
    def default(cls) -> "Codec":
        return cls.load(None)

    # -- latents <-> probabilities -------------------------------------------------
    def _scales(self, log_scale_fp: torch.Tensor) -> np.ndarray:
        table = self.weights.scale_table
        index = torch.floor((log_scale_fp - self.weights.scale_offset) / 2**SCALE_STEP_SHIFT)
        return table[index.clamp(0, len(table) - 1).long().numpy()]

    def _level_model(self, y: torch.Tensor, base: torch.Tensor, level: int,
                     band_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(means, scales) of one level as (G, h, w) float64 arrays, exactly reproducible.

        ``y`` holds at least the levels before ``level``; ``base`` is
        ``exact.hyper_base(z)``. The work runs in bands of rows: every band
        gives the same integers as the whole image would.
        """
        g = self.config.group_size
        _, _, h, w = base.shape
        rows = band_rows or max(1, BAND_POSITIONS // w)
        halo = self.exact.band_halo
        previous = y[:, : level * g]
        means, scales = np.empty((g, h, w)), np.empty((g, h, w))
        for r0 in range(0, h, rows):
            r1 = min(r0 + rows, h)
            mean_fp, log_scale_fp = self.exact.level_parameters_band(
                _rows_with_halo(previous, r0, r1, halo), _rows_with_halo(base, r0, r1, halo), level)
            means[:, r0:r1] = (mean_fp[0] / self.exact.unit).numpy()
            scales[:, r0:r1] = self._scales(log_scale_fp)[0]
        return means, scales

    # -- encode ----------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer latents (z, y) of an (H, W, 3) uint8 image, clamped to the codable ranges."""
        y = tiled_analysis(self.model.g_a, _pad_to_multiple(pixels))
        z = tiled_hyper_analysis(self.model.h_a, y)
        z_int = torch.round(z).clamp_(-Z_BOUND, Z_BOUND)[0].to(torch.int32).numpy()
        y_int = torch.empty(y.shape[1:], dtype=LATENT_DTYPE)
        g = self.config.group_size
        for c in range(0, y.shape[1], g):  # a level at a time: no full-size float temporary
            y_int[c : c + g] = torch.round(y[0, c : c + g]).clamp_(-Y_BOUND, Y_BOUND)
        return z_int, y_int.numpy()

    def encode(self, image, levels: int | None = None, keep_metadata: bool = True,
               max_pixels: int | None = None) -> bytes:
        """Encode an image (path, PIL image, RGB uint8 array) into a SIC file with
        ``levels`` levels (default: all). Images over ``max_pixels`` (default:
        ``sicc.MAX_IMAGE_PIXELS``, the limit the decoder applies) are refused."""
        rgb = load_rgb(image, _pixel_limit(max_pixels))
        levels = self.config.levels if levels is None else levels
        if not 0 <= levels <= self.config.levels:
            raise ValueError(f"levels must be in 0..{self.config.levels}")
        height, width = rgb.pixels.shape[:2]
        z_int, y_int = self.analyse(rgb.pixels)
        hyper_bytes = encode_categorical((z_int + Z_BOUND).reshape(z_int.shape[0], -1), self.weights.z_frequencies)
        base = self.exact.hyper_base(torch.from_numpy(z_int)[None])
        y = torch.from_numpy(y_int)[None]
        g = self.config.group_size
        coded = []
        for level in range(levels):
            means, scales = self._level_model(y, base, level)
            coded.append(encode_gaussian(y_int[level * g : (level + 1) * g], means, scales))
        header = container.Header(width, height, self.model_id, self.config.levels)
        return container.write(
            header, hyper_bytes, coded,
            icc_profile=rgb.icc_profile if keep_metadata else None,
            exif=rgb.exif if keep_metadata else None,
        )

    # -- decode ----------------------------------------------------------------------
    def parse(self, data: bytes, strict: bool = False, max_pixels: int | None = None) -> container.SicFile:
        """Parse and check that this codec's model made the file; warn about cut or damaged levels."""
        parsed = container.parse(bytes(data), max_pixels=_pixel_limit(max_pixels), strict=strict)
        if parsed.header.model_id != self.model_id or parsed.header.model_levels != self.config.levels:
            raise UnsupportedError(
                f"file was encoded with model {parsed.header.model_id.hex()}, "
                f"this sicc has model {self.model_id.hex()}")
        if parsed.truncated:
            warnings.warn(f"file is truncated inside level {len(parsed.levels) + 1}; "
                          f"decoding the {len(parsed.levels)} complete levels", TruncatedFileWarning, stacklevel=3)
        if parsed.corrupt_level is not None:
            warnings.warn(f"level {parsed.corrupt_level} is corrupt ({parsed.corrupt_reason}); "
                          f"decoding the {len(parsed.levels)} levels before it", CorruptLevelWarning, stacklevel=3)
        return parsed

    def decode_latents(self, parsed: container.SicFile, level: int,
                       strict: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Hyper base features and the integer y of levels 1..``level`` (shape (1, level*G, h, w)).

        A level that passes its CRC but does not decode (a forged payload) is an
        error when ``strict``; otherwise it is treated like a CRC failure: a
        warning, and the levels before it are returned.
        """
        lh, lw = (-(-parsed.header.height // SPATIAL_FACTOR) * 4, -(-parsed.header.width // SPATIAL_FACTOR) * 4)
        zh, zw = lh // 4, lw // 4
        try:
            z = decode_categorical(parsed.hyper, self.weights.z_frequencies, zh * zw)
        except CodingError as exc:
            raise CorruptError(f"hyperprior is corrupt: {exc}") from None
        z = torch.from_numpy(z.astype(np.int64) - Z_BOUND).view(1, -1, zh, zw)
        base = self.exact.hyper_base(z)
        g = self.config.group_size
        y = torch.zeros((1, level * g, lh, lw), dtype=LATENT_DTYPE)
        for index in range(level):
            means, scales = self._level_model(y, base, index)
            try:
                symbols = decode_gaussian(parsed.levels[index], means, scales)
            except CodingError as exc:
                if strict:
                    raise CorruptError(f"level {index + 1} is corrupt: {exc}") from None
                warnings.warn(f"level {index + 1} is corrupt ({exc}); decoding the {index} levels before it",
                              CorruptLevelWarning, stacklevel=3)
                return base, y[:, : index * g].clone()
            y[0, index * g : (index + 1) * g] = torch.from_numpy(symbols.astype(np.int16))
        return base, y

    def complete_latent(self, coded: torch.Tensor, base: torch.Tensor, spread: float,
                        rng: np.random.Generator | None) -> torch.Tensor:
        """Append sampled levels: y_e = round(mu + spread * u), u ~ U(-1, 1) from ``rng``."""
        g = self.config.group_size
        y = torch.zeros((1, self.config.latent) + tuple(coded.shape[2:]), dtype=LATENT_DTYPE)
        y[:, : coded.shape[1]] = coded
        for index in range(coded.shape[1] // g, self.config.levels):
            means, _ = self._level_model(y, base, index)
            values = means if spread == 0 or rng is None else means + spread * rng.uniform(-1.0, 1.0, means.shape)
            y[0, index * g : (index + 1) * g] = torch.from_numpy(np.clip(np.round(values), -Y_BOUND, Y_BOUND).astype(np.int16))
        return y

    @torch.no_grad()
    def synthesize(self, y: torch.Tensor, height: int, width: int) -> Image.Image:
        """The RGB image of a complete integer latent."""
        return tiled_synthesis_image(self.model.g_s, y, height, width)

    def decode(self, data: bytes, samples: int = 1, seed: int = 0, spread: float = DEFAULT_SPREAD,
               level: int | None = None, strict: bool = False, max_pixels: int | None = None) -> list[Image.Image]:
        """Decode ``samples`` reconstructions from the first ``level`` levels (default: all present).

        Missing levels are sampled with ``spread`` (0: the deterministic mean decode);
        sample k uses the random stream (seed, k), so results repeat exactly.
        """
        if samples < 1:
            raise ValueError("samples must be at least 1")
        if seed < 0:
            raise ValueError("seed must be a non-negative integer")
        if not (spread >= 0 and np.isfinite(spread)):
            raise ValueError("spread must be a finite number >= 0")
        parsed = self.parse(data, strict=strict, max_pixels=max_pixels)
        available = len(parsed.levels)
        level = available if level is None else level
        if not 0 <= level <= available:
            raise ValueError(f"level {level} is not in the file (it holds levels 0..{available})")
        base, coded = self.decode_latents(parsed, level, strict=strict)
        level = coded.shape[1] // self.config.group_size
        width, height = parsed.header.width, parsed.header.height
        images = []
        deterministic = spread == 0 or level == self.config.levels
        for k in range(1 if deterministic else samples):
            y = self.complete_latent(coded, base, spread, None if deterministic else _seed_generator(seed, k))
            images.append(self._with_metadata(self.synthesize(y, height, width), parsed))
            del y
        while len(images) < samples:
            images.append(images[0].copy())
        return images

    @staticmethod
    def _with_metadata(image: Image.Image, parsed: container.SicFile) -> Image.Image:
        if parsed.icc_profile:
            image.info["icc_profile"] = parsed.icc_profile
        if parsed.exif:
            image.info["exif"] = parsed.exif
        return image

    # -- inspect / cut ---------------------------------------------------------------
    def estimated_bits(self, image) -> dict:
        """The float model's own estimate of the bits of z and of each level (for overhead figures)."""
        rgb = load_rgb(image)
        z_int, y_int = self.analyse(rgb.pixels)
        freq = self.weights.z_frequencies
        p = freq[np.arange(z_int.shape[0])[:, None], (z_int + Z_BOUND).reshape(z_int.shape[0], -1)]
        z_bits = float(-np.log2(p / freq.sum(axis=1, keepdims=True)).sum())
        from .model.sic import gaussian_likelihood, scales_from_log

        with torch.no_grad():
            hyper = self.model.h_s(torch.from_numpy(z_int)[None].float())
            y = torch.from_numpy(y_int)[None].float()
            means, log_scales = self.model.entropy_parameters(y, hyper)
            bits = -torch.log2(gaussian_likelihood(y, means, scales_from_log(log_scales)))
        per_level = bits[0].reshape(self.config.levels, -1).sum(dim=1).double().tolist()
        return {"z_bits": z_bits, "level_bits": per_level, "pixels": int(rgb.pixels.shape[0] * rgb.pixels.shape[1])}
