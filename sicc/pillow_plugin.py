"""Pillow plugin: after ``import sicc``, ``Image.open("x.sic")`` decodes SIC files.

The plugin decodes deterministically (spread 0) with the shipped model; use
``sicc.decode`` for sampled reconstructions.
"""

from __future__ import annotations

from PIL import Image, ImageFile

from . import container

MIME_TYPE = "image/x-sic"


def _accept(prefix: bytes) -> bool:
    return prefix[: len(container.MAGIC)] == container.MAGIC


class SicImageFile(ImageFile.ImageFile):
    format = "SIC"
    format_description = "Synonymous Image Compression (progressive)"

    def _open(self) -> None:
        data = self.fp.read()
        try:
            header = container.parse_header(data)
        except Exception as exc:
            raise SyntaxError(f"not a valid SIC file: {exc}") from None
        self._sic_data = data
        self._size = (header.width, header.height)
        self._mode = "RGB"
        self.tile = []

    def load(self):
        if self._sic_data is not None:
            from .codec import Codec

            decoded = Codec.default().decode(self._sic_data, spread=0.0)[0]
            self.im = decoded.im
            self.info.update(decoded.info)
            self._sic_data = None
        return Image.Image.load(self)


def register() -> None:
    Image.register_open(SicImageFile.format, SicImageFile, _accept)
    Image.register_extension(SicImageFile.format, ".sic")
    Image.register_mime(SicImageFile.format, MIME_TYPE)
