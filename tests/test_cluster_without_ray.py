"""Without Ray (issue #46): the runtime and the other commands never import it, and `sicc cluster`
says how to install it in one line (exit 2). Runs whether or not the ray extra is installed."""

from __future__ import annotations

import subprocess
import sys

from tests.clitools import REPO

BLOCK_RAY = "import sys; sys.modules['ray'] = None; sys.modules['pyarrow'] = None; "


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_runtime_and_the_batch_commands_never_import_ray(tmp_path):
    out = tmp_path / "a.sic"
    code = ("import sys, sicc, sicc.cli, sicc.batch; from sicc import cli; "
            f"sys.argv = ['sicc', 'encode', 'examples/kodim23.png', '-o', {str(out)!r}, '--levels', '1', '-q']\n"
            "try:\n    cli.run()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'pyarrow', 'pandas')))")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert out.read_bytes().startswith(b"\x8bSIC")


def test_sicc_cluster_without_ray_says_how_to_install_it(tmp_path):
    code = BLOCK_RAY + ("from sicc import cli; "
                        f"sys.argv = ['sicc', 'cluster', 'encode', 'examples', '-o', {str(tmp_path / 'out')!r}]; "
                        "cli.run()")
    result = run_python(code)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sicc: error: sicc cluster needs Ray Data: pip install"), lines
    assert "sicc[ray]" in lines[0]
    assert not (tmp_path / "out").exists()
