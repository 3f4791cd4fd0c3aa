"""The sicc benchmark (issue #5): real-file rate-distortion per progressive level on Kodak,
against JPEG / WebP / AVIF / JPEG XL, plus synonymous-decoding behaviour, speed and memory.

Run ``python -m sicc.bench --help``. Results go to ``bench/results.json`` and
``bench/rd.png``; ``python -m sicc.bench readme`` turns them into README tables.

Modules: images (inputs), metrics (PSNR, MS-SSIM, LPIPS, offline DISTS),
baselines (classical codecs), progressive (sicc per level), synonymy
(diversity, idempotence), curves (averaging, matched-bpp interpolation),
reference (published MS-ILLM points), speed / procs / memprobe (timing and
peak memory), runner (one run -> results dict), plots, report (README).
"""
