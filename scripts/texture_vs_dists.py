"""How well does the training objective's texture distance track DISTS, next to LPIPS?

    python scripts/texture_vs_dists.py [--images 8] [--crop 256] [--data ../shared/data/train]

Training photos only (Kodak is for evaluation). For centre crops of a few photos it makes
distorted versions (the shipped model at levels 2, 4, 8, 16, deterministic and sampled; JPEG
q5/15/40; Gaussian blur 1 and 2 px), measures the benchmark's DISTS and LPIPS and the
objective's ``texture_distance`` (``sicc.train.perceptual``), and prints Spearman correlations
with DISTS: across all pairs, and within each image (the ranking a training step sees).
"""

from __future__ import annotations

import argparse
import io
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy.stats import spearmanr

import sicc
from sicc.bench.images import center_crop
from sicc.bench.metrics import Metrics, to_tensor
from sicc.train.data import default_train_dir
from sicc.train.perceptual import LPIPSLoss


def distortions(img: Image.Image) -> dict[str, Image.Image]:
    data = sicc.encode(img, threads=1)
    out = {}
    for level in (2, 4, 8, 16):
        small = sicc.truncate(data, level=level)
        out[f"sicc-det{level}"] = sicc.decode(small, spread=0.0, threads=1)[0]
        out[f"sicc-sampled{level}"] = sicc.decode(small, seed=1, threads=1)[0]
    for q in (5, 15, 40):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        out[f"jpeg{q}"] = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    for r in (1.0, 2.0):
        out[f"blur{r:g}"] = img.filter(ImageFilter.GaussianBlur(r))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    files = sorted((args.data or default_train_dir()).glob("*"))
    random.Random(0).shuffle(files)
    metrics, objective = Metrics(), LPIPSLoss()
    rows = []  # (photo, DISTS, LPIPS, texture)
    for f in files[: args.images]:
        img = center_crop(Image.open(f).convert("RGB"), args.crop)
        ref = metrics.reference(img)
        for name, candidate in distortions(img).items():
            measured = metrics.compare(ref, candidate)
            with torch.no_grad():
                _, texture = objective(to_tensor(candidate), to_tensor(img), texture=True)
            rows.append((f.name, measured["dists"], measured["lpips"], float(texture)))
            print(f"{f.name:28s} {name:15s} DISTS {measured['dists']:.3f}  LPIPS {measured['lpips']:.3f}  "
                  f"texture {float(texture):.3f}", flush=True)
    a = np.array([r[1:] for r in rows])
    per_photo = defaultdict(list)
    for r in rows:
        per_photo[r[0]].append(r[1:])
    print(f"\nSpearman correlation with DISTS, {len(rows)} pairs from {len(per_photo)} photos: all pairs / within a photo")
    for label, score in (("LPIPS", lambda v: v[:, 1]), ("texture", lambda v: v[:, 2]),
                         ("LPIPS + 0.5 texture", lambda v: v[:, 1] + 0.5 * v[:, 2]),
                         ("LPIPS + 1 texture", lambda v: v[:, 1] + v[:, 2])):
        within = np.mean([spearmanr(np.array(v)[:, 0], score(np.array(v)))[0] for v in per_photo.values()])
        print(f"  {label:20s} {spearmanr(a[:, 0], score(a))[0]:.3f} / {within:.3f}")


if __name__ == "__main__":
    main()
