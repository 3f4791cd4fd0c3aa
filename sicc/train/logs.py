"""Training-log helpers: the summary stored in a weights file and the compact committed log."""

from __future__ import annotations

import json
from pathlib import Path


def summarize_logs(paths: list[Path]) -> dict:
    """Steps, hours and the final loss terms of the training logs behind a weights file."""
    runs = []
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if not rows:
            continue
        last = rows[-100:]
        keys = ("loss", "full_bpp", "full_psnr", "full_lpips") + (("full_texture",) if "full_texture" in last[-1] else ())
        mean = {k: sum(r[k] for r in last) / len(last) for k in keys}
        runs.append({
            "log": Path(path).name,
            "first_step": rows[0]["step"],
            "last_step": rows[-1]["step"],
            "hours": round(sum(r["seconds"] for r in rows) / 3600, 2),
            "final_100_steps_mean": {k: round(v, 4) for k, v in mean.items()},
        })
    return {"runs": runs}


LOG_KEYS = ("loss", "full_psnr", "full_bpp", "full_lpips", "level_bpp", "level_lpips", "consistency", "seconds")


def compact_log(paths: list[Path], every: int = 50, continuous: bool = False) -> list[dict]:
    """Training logs averaged over windows of ``every`` steps: small enough to commit.

    ``continuous``: the logs are successive runs whose step counters each restart (a run
    initialised from the previous one's network); their steps are renumbered to follow on.
    """
    rows = []
    for path in paths:
        run = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if continuous and rows and run:
            shift = rows[-1]["step"] - run[0]["step"] + 1
            run = [{**r, "step": r["step"] + shift} for r in run]
        rows += run
    out = []
    for start in range(0, len(rows), every):
        window = rows[start : start + every]
        entry = {"step": window[-1]["step"]}
        entry.update({k: round(sum(r[k] for r in window) / len(window), 4) for k in LOG_KEYS})
        out.append(entry)
    return out
