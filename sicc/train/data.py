"""Training crops: random crops with flips from a folder of photos or from a crop pack.

A *crop pack* is one ``.npz`` of pre-cut crops (stored as JPEG q95 bytes) small
enough (<= 40 MB) to travel with the code to a GPU machine that cannot see
``shared/``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def default_train_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


def load_folder(folder: Path, min_side: int) -> list[np.ndarray]:
    """Every RGB photo in ``folder`` as uint8 HxWx3, skipping ones smaller than ``min_side``."""
    images = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        if min(arr.shape[:2]) >= min_side:
            images.append(arr)
    if not images:
        raise FileNotFoundError(f"no training images of at least {min_side}px in {folder}")
    return images


def load_pack(pack: Path) -> list[np.ndarray]:
    """The crops of a pack written by :func:`write_pack`."""
    with np.load(pack) as data:
        blob, offsets = data["jpeg"], data["offsets"]
    return [
        np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
        for a, b in zip(offsets[:-1], offsets[1:])
    ]


def write_pack(images: list[np.ndarray], out: Path, crop: int, max_bytes: int, seed: int = 0) -> int:
    """Cut random ``crop``-sized squares, round-robin over the images, until ``max_bytes``.

    Returns the number of crops written.
    """
    rng = np.random.default_rng(seed)
    chunks: list[bytes] = []
    total = 0
    while True:
        for img in images:
            piece = random_crop(img, crop, rng)
            buf = io.BytesIO()
            Image.fromarray(piece).save(buf, "JPEG", quality=95, subsampling=0)
            if total + buf.tell() > max_bytes:
                offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
                blob = np.frombuffer(b"".join(chunks), dtype=np.uint8)
                out.parent.mkdir(parents=True, exist_ok=True)
                np.savez(out, jpeg=blob, offsets=offsets)
                return len(chunks)
            chunks.append(buf.getvalue())
            total += buf.tell()


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return img[top : top + size, left : left + size]


class CropSampler:
    """Random crop batches with flips, driven by one seeded generator so that a
    resumed run draws exactly the batches the uninterrupted run would have."""

    def __init__(self, images: list[np.ndarray], crop: int, batch: int, seed: int = 0):
        if any(min(im.shape[:2]) < crop for im in images):
            raise ValueError(f"every image must be at least {crop}px")
        self.images, self.crop, self.batch = images, crop, batch
        self.rng = np.random.default_rng(seed)

    def next_batch(self) -> torch.Tensor:
        picks = self.rng.integers(0, len(self.images), self.batch)
        crops = []
        for i in picks:
            piece = random_crop(self.images[i], self.crop, self.rng)
            if self.rng.random() < 0.5:
                piece = piece[:, ::-1]
            if self.rng.random() < 0.5:
                piece = piece[::-1]
            crops.append(np.ascontiguousarray(piece))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
        return batch.float().div_(255.0)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
