"""An independent reader of formats/sic-v1.md, written from the spec (not from
sicc/container.py), so the tests check the files against the document."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = bytes([0x8B, 0x53, 0x49, 0x43, 0x0D, 0x0A, 0x1A, 0x0A])


@dataclass
class Chunk:
    kind: str
    offset: int
    length: int
    payload: bytes
    crc_ok: bool


def read_header(data: bytes) -> dict:
    assert data[:8] == MAGIC, "magic"
    version, flags, levels, reserved = data[8], data[9], data[10], data[11]
    width, height = struct.unpack("<II", data[12:20])
    (crc,) = struct.unpack("<I", data[28:32])
    return {
        "version": version, "flags": flags, "grayscale": bool(flags & 0x01), "model_levels": levels,
        "reserved": reserved,
        "width": width, "height": height, "model_id": data[20:28].hex(),
        "header_crc_ok": zlib.crc32(data[:28]) == crc,
    }


def read_chunks(data: bytes) -> list[Chunk]:
    chunks, pos = [], 32
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            break
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack("<I", data[end - 4 : end])
        chunks.append(Chunk(kind.decode("ascii"), pos, length, payload, zlib.crc32(kind + payload) == crc))
        pos = end
    return chunks


ORDER = ("ICCP", "EXIF", "HYPR")  # then LEVL 1, 2, ... (the spec's "Layout" table)


def layout_problem(chunks: list[Chunk]) -> str | None:
    """Why the chunk sequence breaks the spec's order, or None: at most one ICCP, then at most one
    EXIF, then exactly one HYPR, then LEVL chunks with indices 1, 2, ... and nothing else."""
    kinds = [c.kind for c in chunks]
    head = kinds[: kinds.index("HYPR") + 1] if "HYPR" in kinds else kinds
    if "HYPR" not in kinds:
        return "no HYPR chunk"
    expected = [k for k in ORDER if k in head]
    if head != expected:
        return f"chunks before the levels are {head}, the spec allows {expected} in that order only"
    for number, chunk in enumerate(chunks[len(head):], 1):
        if chunk.kind != "LEVL" or not chunk.payload or chunk.payload[0] != number:
            return f"chunk {len(head) + number} is {chunk.kind}, the spec wants LEVL {number}"
    return None
