"""Load a portrait safely: size and pixel-count limits before decoding, RGB uint8 out."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 40_000_000  # e.g. 8000x5000; larger is a decompression bomb or a wasteful upload
MIN_SIDE = 64
FORMATS = ("PNG", "JPEG", "WEBP")


class PortraitImageError(ValueError):
    """A portrait we cannot use; str() is one line saying what to do."""


def read_portrait_bytes(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise PortraitImageError(f"portrait not found: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise PortraitImageError(f"{path.name} is {size / 2**20:.0f} MB; use an image under "
                                 f"{MAX_FILE_BYTES // 2**20} MB")
    return path.read_bytes()


def load_portrait(source: str | Path | bytes) -> np.ndarray:
    """-> uint8 RGB [H, W, 3]. Accepts a path or the file's bytes (what travels on the wire)."""
    data = source if isinstance(source, (bytes, bytearray, memoryview)) else read_portrait_bytes(source)
    name = "portrait" if isinstance(source, (bytes, bytearray, memoryview)) else Path(source).name
    if len(data) > MAX_FILE_BYTES:
        raise PortraitImageError(f"{name} is larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
            _check_size(image, name)
            image = ImageOps.exif_transpose(image)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PortraitImageError(f"{name} has too many pixels for a photo (decompression bomb?): use "
                                 f"an image of at most {MAX_PIXELS // 1_000_000} megapixels") from None
    except UnidentifiedImageError:
        raise PortraitImageError(f"{name} is not a PNG, JPEG or WebP image: choose a photo file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, PortraitImageError):
            raise
        raise PortraitImageError(f"{name} is corrupt or truncated: re-export the photo") from None
    return _to_rgb(image)


def _check_size(image: Image.Image, name: str) -> None:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise PortraitImageError(f"{name} is {w}x{h}: use an image of at most "
                                 f"{MAX_PIXELS // 1_000_000} megapixels")
    if min(w, h) < MIN_SIDE:
        raise PortraitImageError(f"{name} is only {w}x{h}: use a photo at least {MIN_SIDE} px on each side")
    if getattr(image, "n_frames", 1) > 1:
        warnings.warn(f"{name} is animated; using its first frame", stacklevel=3)


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
        return np.ascontiguousarray(np.stack([arr] * 3, axis=-1))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
