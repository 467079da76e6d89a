"""Decode untrusted image uploads safely (size checked before pixels are decoded)."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from ..serving.errors import InvalidInput, PayloadTooLarge

ACCEPTED_FORMATS = ("JPEG", "PNG")


def decode_image(data: bytes, *, max_pixels: int, greyscale: bool = False) -> Image.Image:
    """Return the decoded image in RGB (or ``L`` when ``greyscale``), or raise a 4xx error.

    The header is parsed first (``Image.open`` is lazy), so a decompression
    bomb (a tiny PNG declaring 100k x 100k pixels) is refused before any pixel
    memory is allocated.
    """
    if not data:
        raise InvalidInput("the uploaded file is empty", param="file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels",
                    param="file",
                )
            image.load()
    except PayloadTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(
            f"image rejected as a decompression bomb: {exc}", param="file"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInput("the file is not a JPEG or PNG image", param="file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"the image could not be decoded: {exc}", param="file") from None
    if min(image.size) < 1:
        raise InvalidInput("the image has no pixels", param="file")
    mode = "L" if greyscale else "RGB"
    return image.convert(mode) if image.mode != mode else image
