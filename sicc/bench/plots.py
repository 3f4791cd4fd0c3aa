"""The rate-distortion figure: bpp against DISTS, LPIPS and PSNR, drawn from results.json."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runner import curve_labels, curve_points  # noqa: E402

PANELS = (("dists", "DISTS ↓"), ("lpips", "LPIPS-alex ↓"), ("psnr", "PSNR (dB) ↑"))
STYLES = {
    "sicc_det": {"color": "tab:red", "marker": "o", "linewidth": 2.2},
    "sicc_sampled": {"color": "tab:red", "marker": "o", "linewidth": 2.2, "linestyle": "--", "markerfacecolor": "none"},
    "jpeg": {"color": "tab:gray", "marker": "s"},
    "webp": {"color": "tab:green", "marker": "^"},
    "avif": {"color": "tab:blue", "marker": "v"},
    "jxl": {"color": "tab:purple", "marker": "D"},
    "ms_illm": {"color": "black", "marker": "*", "linestyle": ":", "markersize": 9},
}
BPP_RANGE = (0.02, 2.0)
BPP_TICKS = (0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)


def _xlim(points: dict[str, list[dict]]) -> tuple[float, float]:
    """The plotted bpp range: every curve's points, within BPP_RANGE, with a small margin."""
    bpps = [p["bpp"] for pts in points.values() for p in pts
            if p.get("bpp") and BPP_RANGE[0] <= p["bpp"] <= BPP_RANGE[1]]
    return (min(bpps) / 1.15, max(bpps) * 1.15) if bpps else BPP_RANGE


def plot_rd(results: dict, path: Path) -> Path:
    """One panel per metric, one line per codec (sicc's levels form its line)."""
    points = curve_points(results)
    labels = curve_labels(results)
    n_images = len(results["settings"]["image_names"])
    fig, axes = plt.subplots(1, len(PANELS), figsize=(6 * len(PANELS), 4.8), constrained_layout=True)
    for ax, (metric, title) in zip(axes, PANELS):
        for name, pts in points.items():
            xy = sorted((p["bpp"], p[metric]) for p in pts
                        if p.get(metric) is not None and p.get("bpp") and BPP_RANGE[0] <= p["bpp"] <= BPP_RANGE[1])
            if not xy:
                continue
            style = {"markersize": 4, "linewidth": 1.4, **STYLES.get(name, {})}
            ax.plot(*zip(*xy), label=labels.get(name, name), **style)
        ax.set_xscale("log")
        ax.set_xticks(BPP_TICKS, [f"{t:g}" for t in BPP_TICKS])
        ax.set_xlim(*_xlim(points))
        ax.set_xlabel("bits per pixel")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    model = results["model"]["id"]
    fig.suptitle(f"Kodak ({n_images} images), sicc model {model}; MS-ILLM: published figures, not measured here",
                 fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
