"""Published MS-ILLM results on Kodak, used as a labelled reference line.

Copied verbatim (Kodak rows of model MS-ILLM) from facebookresearch/NeuralCompression,
projects/illm/results.csv at commit 5be7844fbeeb6e2b0c152158c9af26353b20faa7.
These are the authors' numbers, not measured here; their LPIPS is LPIPS-alex.
Interpolated in log(bpp) they give DISTS 0.099 / 0.073 / 0.061 / 0.044 at
0.1 / 0.2 / 0.3 / 0.5 bpp, the figures quoted in the project's issue.
"""

from __future__ import annotations

MS_ILLM_SOURCE = {
    "name": "MS-ILLM (Muckley et al., ICML 2023), published Kodak results",
    "url": "https://github.com/facebookresearch/NeuralCompression/blob/"
    "5be7844fbeeb6e2b0c152158c9af26353b20faa7/projects/illm/results.csv",
    "repository": "facebookresearch/NeuralCompression",
    "path": "projects/illm/results.csv",
    "commit": "5be7844fbeeb6e2b0c152158c9af26353b20faa7",
    "note": "published figures, not measured by this benchmark",
}

_CSV_KODAK_MS_ILLM = """\
bpp,lpips,dists,ms_ssim,psnr
0.0443454347550869,0.15762092173099518,0.13461525738239288,0.8460505604743958,24.729001998901367
0.0806070938706398,0.10997020453214644,0.1085180938243866,0.8902091383934021,25.92298126220703
0.1531745046377182,0.07317978143692017,0.08091441541910172,0.9282328486442566,27.53347969055176
0.2958035171031952,0.04505142197012901,0.061542853713035583,0.9596877694129944,29.63416862487793
0.4323526918888092,0.03202955052256584,0.048724930733442307,0.9719058871269226,31.03455352783203
0.70916748046875,0.01800273358821869,0.033452358096838,0.9836977124214172,33.2116584777832
"""


def ms_illm_kodak() -> list[dict]:
    """The six published MS-ILLM operating points on Kodak."""
    header, *lines = _CSV_KODAK_MS_ILLM.strip().splitlines()
    keys = header.split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines]
