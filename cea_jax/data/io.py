"""Reading and writing image files with errors that name the file.

Every loader goes through :func:`read_rgb`, so a corrupt file, an unexpected channel
layout or a missing folder surfaces as :class:`BadImageError` / :class:`DataLayoutError`
with the path and what was expected, instead of a shape error deep inside JAX.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from runkit.files import atomic_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class BadImageError(ValueError):
    """An image file that cannot be used (unreadable, wrong channels, wrong size)."""


class DataLayoutError(ValueError):
    """A dataset folder that does not have the expected layout."""


def read_rgb(path: str | os.PathLike, allow_gray: bool = False) -> np.ndarray:
    """Read an 8-bit RGB image as uint8 [H, W, 3].

    Grayscale files are rejected unless ``allow_gray`` (then replicated to RGB, as the
    official loaders do for BSD400); images with an alpha channel, palette images with
    transparency and 16-bit images are always rejected, since silently flattening them
    would change the pixels the metrics compare (PIL itself would quietly cut a 16-bit RGB
    PNG to 8 bits, so its header's sample layout is checked before decoding). Images over
    PIL's ``MAX_IMAGE_PIXELS`` are rejected from their header, before any pixel is decoded
    (decompression bombs).

    A file holding several images (multi-page TIFF, animated GIF/PNG/WebP) is refused rather
    than read as its first frame; a JPEG's extra MPO frames (previews, depth maps) are not
    images of their own and are ignored, as photo viewers do. Any transparency is refused,
    a palette's or a colour key's (PNG ``tRNS``), since dropping it changes the picture. An
    EXIF orientation is applied (the array is the picture as viewers show it), so a phone
    photo is restored upright and the two members of a pair compare like with like.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1 and img.format != "MPO":
                raise BadImageError(f"{path}: {img.format} file holding {frames} images (pages or animation frames); "
                                    "expected a single 8-bit RGB image (save the one you want on its own)")
            if any(";16" in _raw_mode(tile) for tile in img.tile):  # 16-bit PNG/TIFF, RGB or gray
                raise BadImageError(f"{path}: 16-bit image; expected 8-bit RGB (save it with 8 bits per channel)")
            img.load()
            if "transparency" in img.info:
                kind = "palette image with transparency" if img.mode == "P" else "transparent colour key (PNG tRNS)"
                raise BadImageError(f"{path}: {kind}; expected 8-bit RGB without transparency")
            img = _upright(img, path)
            mode = img.mode
            if mode == "P":
                img = img.convert("RGB")
                mode = "RGB"
            if mode in ("L", "1"):
                if not allow_gray:
                    raise BadImageError(f"{path}: grayscale image; expected 8-bit RGB (3 channels)")
                img = img.convert("RGB")
            elif mode in ("RGBA", "LA", "PA"):
                raise BadImageError(f"{path}: image has an alpha channel ({mode}); expected 8-bit RGB")
            elif mode != "RGB":
                raise BadImageError(f"{path}: unsupported image mode {mode!r}; expected 8-bit RGB")
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise BadImageError(f"{path}: file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(f"{path}: image larger than {Image.MAX_IMAGE_PIXELS} pixels (PIL's limit); "
                            "expected an ordinary photo") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise BadImageError(f"{path}: cannot read image ({err})") from None
    return array


def _upright(img: Image.Image, path: Path) -> Image.Image:
    """``img`` turned as its EXIF orientation says viewers show it; BadImageError if that tag cannot be read."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, OSError) as err:  # PIL's errors for a damaged EXIF block
        raise BadImageError(f"{path}: unreadable EXIF metadata ({err}), so its orientation is unknown; "
                            "expected a readable EXIF block or none") from None


def _raw_mode(tile: Any) -> str:
    """The sample layout a decoder tile reads (e.g. ``RGB;16B`` for a 16-bit RGB PNG), '' if none."""
    args = tile[3]
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else ""


def check_pair(degraded: np.ndarray, clean: np.ndarray, degraded_path: object, clean_path: object) -> None:
    """Raise BadImageError unless both members of a pair have the same size."""
    if degraded.shape != clean.shape:
        raise BadImageError(
            f"{degraded_path}: size {degraded.shape[1]}x{degraded.shape[0]} does not match its clean "
            f"partner {clean_path} ({clean.shape[1]}x{clean.shape[0]})"
        )


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files in ``folder``; DataLayoutError if it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataLayoutError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataLayoutError(f"{folder}: no image files ({', '.join(IMAGE_EXTENSIONS)}) found")
    return files


# What a restored image may be written as, by suffix: the formats read_rgb reads, each
# lossless but JPEG (written at quality 95 without chroma subsampling, to keep what was restored).
OUTPUT_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}), ".bmp": ("BMP", {}), ".tif": ("TIFF", {}),
    ".tiff": ("TIFF", {}), ".webp": ("WEBP", {"lossless": True}),
}


def output_format(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(PIL format, save options) that ``path``'s suffix names; ValueError naming the file for any other suffix.

    Checked before any work, so ``out.jpg`` never holds PNG bytes and ``out.gif`` is refused at once.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: cannot write an image with the suffix {suffix or '(none)'!r}; "
                         f"expected one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a uint8 image atomically (temporary file + rename) in the format its suffix names."""
    kind, options = output_format(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image, np.uint8)).save(tmp, format=kind, **options)
