"""Training crops: random crops with flips from a folder of photos or from a pack.

A *pack* is one ``.npz`` of JPEG-coded pictures small enough to travel with the
code to a GPU machine that cannot see ``shared/``: either pre-cut crops
(``write_pack``) or the whole photos re-coded to fit a byte budget
(``write_photo_pack``; a GPU burst repeats 1,000 fixed crops hundreds of
times, whole photos give fresh crops every step).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff"}


def default_train_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "train"


VALIDATION_MODULUS = 17
"""A photo is held out for validation when the SHA-256 of its file name, as a number, is 0 modulo this
(40 of the 680 training photos): never trained on, scored during and after runs (sicc.train.validate)."""
SPLITS = ("train", "validation", "all")


def is_validation(name: str) -> bool:
    """Whether the photo called ``name`` (a file name, no folder) belongs to the validation split."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest(), "big") % VALIDATION_MODULUS == 0


def load_folder(folder: Path, min_side: int, split: str = "train") -> list[np.ndarray]:
    """Every RGB photo of ``split`` in ``folder`` as uint8 HxWx3, skipping ones smaller than ``min_side``:
    "train" leaves the validation photos out (:func:`is_validation`), "validation" keeps only them."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    images = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if split != "all" and is_validation(path.name) != (split == "validation"):
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
    with np.load(pack, allow_pickle=False) as data:
        blob, offsets = data["jpeg"], data["offsets"]
    return [
        np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
        for a, b in zip(offsets[:-1], offsets[1:])
    ]


def _save_pack(chunks: list[bytes], out: Path) -> None:
    offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
    blob = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, jpeg=blob, offsets=offsets)


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    """JPEG 4:4:4, progressive with optimized Huffman tables: the same pixels as a baseline file of
    the same quality, 7 % fewer bytes on the 638 training photos at q90 (56.7 -> 52.5 MB)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=0, optimize=True, progressive=True)
    return buf.getvalue()


def write_photo_pack(images: list[np.ndarray], out: Path, max_bytes: int,
                     qualities: tuple[int, ...] = (95, 93, 90, 88, 86, 84, 82, 80, 78, 75)) -> int:
    """Every photo, whole, as JPEG 4:4:4 at the highest quality that fits ``max_bytes``.

    Returns the quality used. Raises ValueError if even the lowest does not fit.
    """
    for quality in qualities:
        chunks = [_jpeg(img, quality) for img in images]
        if sum(map(len, chunks)) + 1024 <= max_bytes:
            _save_pack(chunks, out)
            return quality
    raise ValueError(f"{len(images)} photos do not fit in {max_bytes} bytes even at JPEG quality {qualities[-1]}")


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
                _save_pack(chunks, out)
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
    resumed run draws exactly the batches the uninterrupted run would have.

    With ``device`` (e.g. "cuda") the photos are held there as uint8 and
    cropped there; the crops drawn are the same on every device.
    """

    def __init__(self, images: list[np.ndarray], crop: int, batch: int, seed: int = 0,
                 device: str | torch.device | None = None):
        if any(min(im.shape[:2]) < crop for im in images):
            raise ValueError(f"every image must be at least {crop}px")
        self.images, self.crop, self.batch = images, crop, batch
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(device) if device is not None else None
        self._held = None
        if self.device is not None and self.device.type != "cpu":
            # np.require copies only a read-only or strided photo (torch wants a writable array)
            self._held = [torch.from_numpy(np.require(im, requirements=["C", "W"])).to(self.device) for im in images]

    def _draws(self) -> list[tuple[int, int, int, bool, bool]]:
        """(image, top, left, flip left-right, flip up-down) of every crop of the next batch."""
        draws = []
        for i in self.rng.integers(0, len(self.images), self.batch):
            h, w = self.images[i].shape[:2]
            top = int(self.rng.integers(0, h - self.crop + 1))
            left = int(self.rng.integers(0, w - self.crop + 1))
            draws.append((int(i), top, left, self.rng.random() < 0.5, self.rng.random() < 0.5))
        return draws

    def next_batch(self, device: str | torch.device | None = None) -> torch.Tensor:
        """(batch, 3, crop, crop) float32 in [0, 1], on ``device`` (default: the sampler's, else CPU)."""
        c = self.crop
        if self._held is not None:
            crops = []
            for i, top, left, flip_lr, flip_ud in self._draws():
                piece = self._held[i][top : top + c, left : left + c]
                dims = [d for d, f in ((1, flip_lr), (0, flip_ud)) if f]
                crops.append(piece.flip(dims) if dims else piece)
            return torch.stack(crops).permute(0, 3, 1, 2).float().div_(255.0)
        crops = []
        for i, top, left, flip_lr, flip_ud in self._draws():
            piece = self.images[i][top : top + c, left : left + c]
            if flip_lr:
                piece = piece[:, ::-1]
            if flip_ud:
                piece = piece[::-1]
            crops.append(np.ascontiguousarray(piece))
        batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        return batch.to(device) if device is not None else batch

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
