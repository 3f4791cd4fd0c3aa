"""The SIC container, version 1 (specified byte by byte in formats/sic-v1.md).

    header (32 bytes) | chunk* ;  chunk = type(4) | length u32 | payload | crc32(type+payload)

Chunks come in a fixed order: optional ICCP and EXIF, then HYPR (the coded
hyper latent z), then LEVL chunks for levels 1, 2, ... Any prefix that ends
at a chunk boundary after HYPR is itself a valid file, so truncation is a byte
cut. This module only reads and writes that structure; it never interprets
the coded payloads.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptError, ImageTooLargeError, NotSicError, TruncatedError, UnsupportedError, too_large_message

MAGIC = b"\x8bSIC\r\n\x1a\n"
VERSION = 1
HEADER_SIZE = 32
CHUNK_OVERHEAD = 12
MAX_DIMENSION = 1 << 20
_HEADER = struct.Struct("<8sBBBBII8sI")
_CHUNK_HEAD = struct.Struct("<4sI")

CHUNK_ICCP = b"ICCP"
CHUNK_EXIF = b"EXIF"
CHUNK_HYPR = b"HYPR"
CHUNK_LEVL = b"LEVL"
_METADATA_CHUNKS = (CHUNK_ICCP, CHUNK_EXIF)

FLAG_GRAYSCALE = 0x01
"""Header flag bit 0: the source was gray; decoders return one gray channel (formats/sic-v1.md)."""
KNOWN_FLAGS = FLAG_GRAYSCALE


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    model_id: bytes
    model_levels: int
    flags: int = 0

    def pack(self) -> bytes:
        body = _HEADER.pack(MAGIC, VERSION, self.flags, self.model_levels, 0,
                            self.width, self.height, self.model_id, 0)[:-4]
        return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class SicFile:
    """A parsed file: header, metadata, coded z, and the coded levels present."""

    header: Header
    hyper: bytes
    levels: list[bytes] = field(default_factory=list)
    icc_profile: bytes | None = None
    exif: bytes | None = None
    chunk_ends: list[int] = field(default_factory=list)  # byte offset after HYPR, LEVL 1, LEVL 2, ...
    truncated: bool = False  # cut inside a chunk
    corrupt_level: int | None = None  # 1-based level whose CRC failed (decoding stopped before it)
    corrupt_reason: str = ""


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return _CHUNK_HEAD.pack(kind, len(payload)) + payload + struct.pack("<I", zlib.crc32(kind + payload))


def write(header: Header, hyper: bytes, levels: list[bytes],
          icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    parts = [header.pack()]
    if icc_profile:
        parts.append(_chunk(CHUNK_ICCP, icc_profile))
    if exif:
        parts.append(_chunk(CHUNK_EXIF, exif))
    parts.append(_chunk(CHUNK_HYPR, hyper))
    for index, coded in enumerate(levels, 1):
        parts.append(_chunk(CHUNK_LEVL, bytes([index]) + coded))
    return b"".join(parts)


def parse_header(data: bytes, max_pixels: int | None = None) -> Header:
    """Check magic, version, CRC and sizes before anything is allocated."""
    if not data:
        raise TruncatedError("file is empty")
    head = data[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise NotSicError("not a SIC file (bad signature)")
    if len(data) < HEADER_SIZE:
        raise TruncatedError(f"file is truncated: {len(data)} bytes, the header alone needs {HEADER_SIZE}")
    magic, version, flags, levels, reserved, width, height, model_id, crc = _HEADER.unpack_from(data)
    if version != VERSION:
        raise UnsupportedError(f"SIC version {version} is not supported (this sicc reads version {VERSION})")
    if zlib.crc32(data[: HEADER_SIZE - 4]) != crc:
        raise CorruptError("header is corrupt (checksum mismatch)")
    if flags & ~KNOWN_FLAGS or reserved:
        raise UnsupportedError(f"unknown header flags 0x{flags:02x}/0x{reserved:02x}")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION):
        raise CorruptError(f"image size {width}x{height} is outside 1..{MAX_DIMENSION}")
    if not 1 <= levels <= 255:
        raise CorruptError(f"model level count {levels} is invalid")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(too_large_message(width, height, max_pixels))
    return Header(width, height, model_id, levels, flags)


def parse(data: bytes, max_pixels: int | None = None, strict: bool = False) -> SicFile:
    """Parse a whole or cut file.

    A cut inside a LEVL chunk, or a level whose CRC fails, ends the level list
    (``truncated`` / ``corrupt_level`` tell which) unless ``strict``, which
    raises instead. Anything wrong before the first level always raises.
    """
    header = parse_header(data, max_pixels)
    pos = HEADER_SIZE
    icc = exif = None
    hyper: bytes | None = None
    result: SicFile | None = None
    while pos < len(data):
        kind, payload, end, problem = _read_chunk(data, pos)
        if result is None:  # before and at HYPR every chunk must be whole and intact
            if problem:
                if problem == "truncated":
                    where = f"the {_chunk_name(kind)} chunk" if kind else "a chunk header"
                    raise TruncatedError(f"file is truncated inside {where}, before any level")
                raise CorruptError(f"{_chunk_name(kind)} chunk is corrupt ({problem})")
            if kind in _METADATA_CHUNKS:
                if hyper is not None or (kind == CHUNK_ICCP and icc is not None) or (kind == CHUNK_EXIF and exif is not None):
                    raise CorruptError(f"{kind.decode()} chunk out of order")
                if kind == CHUNK_ICCP:
                    icc = payload
                else:
                    exif = payload
            elif kind == CHUNK_HYPR:
                hyper = payload
                result = SicFile(header, hyper, icc_profile=icc, exif=exif, chunk_ends=[end])
            else:
                raise CorruptError(f"unexpected chunk {kind!r} before the hyperprior")
            pos = end
            continue
        level = len(result.levels) + 1
        if problem == "truncated":
            if strict:
                raise TruncatedError(f"file is truncated inside level {level}")
            result.truncated = True
            break
        if problem is None and (kind != CHUNK_LEVL or not payload or payload[0] != level):
            problem = f"expected level {level}, found {kind!r}"
        if problem is None and level > header.model_levels:
            problem = f"more levels than the model's {header.model_levels}"
        if problem:
            if strict:
                raise CorruptError(f"level {level} is corrupt ({problem})")
            result.corrupt_level, result.corrupt_reason = level, problem
            break
        result.levels.append(payload[1:])
        result.chunk_ends.append(end)
        pos = end
    if result is None:
        raise TruncatedError("file is truncated: it ends before the hyperprior chunk")
    return result


def _chunk_name(kind: bytes) -> str:
    """A chunk type for messages: as is when printable ASCII, else escaped, so that a forged
    type can never put a newline or a terminal control sequence into an error message."""
    return kind.decode("ascii") if kind and all(0x20 < b < 0x7F for b in kind) else repr(kind)


def _read_chunk(data: bytes, pos: int) -> tuple[bytes, bytes, int, str | None]:
    """(type, payload, end offset, problem) of the chunk at ``pos``; problem is None,
    'truncated' or a reason for corruption. The length is checked against the data
    actually present before any slice is taken."""
    if len(data) - pos < _CHUNK_HEAD.size:
        return b"", b"", len(data), "truncated"
    kind, length = _CHUNK_HEAD.unpack_from(data, pos)
    end = pos + _CHUNK_HEAD.size + length + 4
    if end > len(data):
        return kind, b"", len(data), "truncated"
    payload = data[pos + _CHUNK_HEAD.size : end - 4]
    (crc,) = struct.unpack_from("<I", data, end - 4)
    if zlib.crc32(kind + payload) != crc:
        return kind, payload, end, "checksum mismatch"
    return kind, payload, end, None


def prefix_length(parsed: SicFile, levels: int) -> int:
    """Bytes of the file prefix that holds the hyperprior and levels 1..``levels``."""
    if not 0 <= levels <= len(parsed.levels):
        raise ValueError(f"level must be in 0..{len(parsed.levels)}")
    return parsed.chunk_ends[levels]
