"""Pillow plugin: after ``import sicc``, ``Image.open("x.sic")`` decodes SIC files and
``image.save("x.sic", bpp=0.2)`` encodes them.

The plugin decodes deterministically (spread 0) with the shipped model; use
``sicc.decode`` for sampled reconstructions. Saving takes the rate of :func:`sicc.encode`
(``bpp``, ``max_bytes`` or ``levels``; default all levels) and ``strip=True`` to leave the
ICC profile and EXIF out.
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
        from .errors import ImageTooLargeError, SiccError

        try:  # bounded: the header, then at most what that header allows; sicc's pixel budget
            data = container.read(self.fp, container.pixel_limit())
            parsed = container.parse(data, max_pixels=container.pixel_limit())
        except ImageTooLargeError as exc:  # as Pillow's own bomb check does, at open
            raise Image.DecompressionBombError(str(exc)) from None
        except SiccError as exc:
            raise SyntaxError(f"not a valid SIC file: {exc}") from None
        header = parsed.header
        self._sic_data = data
        self._size = (header.width, header.height)
        self._mode = "L" if header.flags & container.FLAG_GRAYSCALE else "RGB"
        self.tile = []
        # The metadata is known from the chunks, before any decoding (as PNG's plugin fills .info at open).
        if parsed.icc_profile:
            self.info["icc_profile"] = parsed.icc_profile
        if parsed.exif:
            self.info["exif"] = parsed.exif

    def load(self):
        if self._sic_data is not None:
            from .codec import Codec

            decoded = Codec.default().decode(self._sic_data, spread=0.0)[0]
            self.im = decoded.im
            self.info.update(decoded.info)
            self._sic_data = None
            # Everything was read at open: a file Image.open opened by name is closed now, as
            # ImageFile.load does for the formats Pillow decodes itself (no ResourceWarning).
            if getattr(self, "_exclusive_fp", False) and self.fp is not None:
                self.fp.close()
            self.fp = None
        return Image.Image.load(self)


SAVE_OPTIONS = ("bpp", "max_bytes", "levels", "strip")


def _save(image: Image.Image, fp, filename) -> None:
    """``image.save(fp, "SIC", bpp=0.2)``: encode with the shipped model (the ICC profile and EXIF
    of ``image.info`` or of the save call are kept unless ``strip=True``)."""
    from . import encode

    options = image.encoderinfo
    unknown = sorted(set(options) - set(SAVE_OPTIONS) - {"icc_profile", "exif"})
    if unknown:
        raise ValueError(f"unknown SIC save option(s): {', '.join(unknown)} (use {', '.join(SAVE_OPTIONS)})")
    source = image
    if options.get("icc_profile") or options.get("exif"):
        source = image.copy()
        for key in ("icc_profile", "exif"):
            if options.get(key):
                value = options[key]
                source.info[key] = value.tobytes() if isinstance(value, Image.Exif) else value
    fp.write(encode(source, levels=options.get("levels"), bpp=options.get("bpp"),
                    max_bytes=options.get("max_bytes"), keep_metadata=not options.get("strip", False)))


def register() -> None:
    Image.register_open(SicImageFile.format, SicImageFile, _accept)
    Image.register_save(SicImageFile.format, _save)
    Image.register_extension(SicImageFile.format, ".sic")
    Image.register_mime(SicImageFile.format, MIME_TYPE)
