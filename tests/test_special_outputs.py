"""Outputs that are not regular files (issue 47): a character device (a /dev/null made with mknod
in a temporary folder), a FIFO, and a symlink to /dev/null are written to directly by encode,
decode, truncate and montage; they are never replaced by a regular file (as root, `-o /dev/null`
used to replace the system's /dev/null)."""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest
from PIL import Image

import sicc
from tests.clitools import cli_inprocess, one_torch_thread, temp_files  # noqa: F401
from tests.conftest import synthetic_image


@pytest.fixture()
def work(tmp_path, tiny_codec, tiny_weights):
    png = tmp_path / "in.png"
    Image.fromarray(synthetic_image(40, 56, seed=2)).save(png)
    sic = tmp_path / "in.sic"
    sic.write_bytes(tiny_codec.encode(str(png)))
    return tmp_path, png, sic, tiny_weights


def commands(png: Path, sic: Path, weights: Path, out: Path) -> dict[str, list]:
    return {
        "encode": ["encode", png, "-o", out, "--weights", weights],
        "decode": ["decode", sic, "-o", out, "--weights", weights],
        "truncate": ["truncate", sic, "-o", out, "--level", "2"],
        "montage": ["montage", sic, "-o", out, "--levels", "1,16", "--samples", "1", "--weights", weights],
    }


def check_output(command: str, data: bytes, png: Path, sic: Path) -> None:
    if command == "encode":
        assert sicc.info(data).complete
    elif command == "truncate":
        assert data == sicc.truncate(sic.read_bytes(), level=2)
    else:
        assert Image.open(io.BytesIO(data)).format == "PNG"


@pytest.mark.parametrize("command", ["encode", "decode", "truncate", "montage"])
def test_character_device_is_written_not_replaced(work, command):
    folder, png, sic, weights = work
    device = folder / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the kernel's /dev/null, here
    except PermissionError:
        pytest.skip("mknod needs root")
    result = cli_inprocess(commands(png, sic, weights, device)[command])
    assert result.code == 0, result.stderr
    assert stat.S_ISCHR(device.stat().st_mode) and device.stat().st_rdev == os.makedev(1, 3)
    assert temp_files(folder) == []


@pytest.mark.parametrize("command", ["encode", "decode", "truncate", "montage"])
def test_symlink_to_dev_null_is_written_through(work, command):
    folder, png, sic, weights = work
    link = folder / "out.bin"
    link.symlink_to("/dev/null")
    result = cli_inprocess(commands(png, sic, weights, link)[command])
    assert result.code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert temp_files(folder) == []


@pytest.mark.parametrize("command", ["encode", "decode", "truncate", "montage"])
def test_fifo_gets_the_output(work, command):
    """The reader on the other end gets exactly what a file would hold; the FIFO stays a FIFO."""
    folder, png, sic, weights = work
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = cli_inprocess(commands(png, sic, weights, fifo)[command])
    reader.join(timeout=60)
    assert result.code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    check_output(command, received[0], png, sic)
    assert temp_files(folder) == []


def test_block_device_is_refused(work):
    folder, png, sic, weights = work
    device = folder / "disk"
    try:
        os.mknod(device, stat.S_IFBLK | 0o600, os.makedev(7, 0))  # a loop device node: never opened
    except PermissionError:
        pytest.skip("mknod needs root")
    result = cli_inprocess(["truncate", sic, "-o", device, "--level", "1"])
    assert result.code == 5 and "block device" in result.stderr, result.stderr
    assert stat.S_ISBLK(device.stat().st_mode)
