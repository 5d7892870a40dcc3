"""Step 1 of the pipeline (vrfer.inference.pipeline): any image -> uint8 gray (H, W) or BGR (H, W, 3).

`load_image` reads a file, bytes, a numpy array or a PIL image: 8/16-bit, gray/colour/alpha/palette/CMYK, EXIF
orientation; a damaged, animated, too large or too small picture is refused in one line (VrferError)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import ImageTooLargeError, VrferError

MAX_PIXELS = 64_000_000          # larger images are refused (JPEGs are decoded at a reduced scale)
MIN_SIDE = 8                     # smaller images cannot hold a face


FLOAT_SLACK = 0.05     # how far outside [0, 1] (or 0-255, scaled) a float image may stray and still be read as one


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        # a [0, 1] image, or a 0-255 one, each with 5% of overshoot (a cubic resize, 1.0001) clipped; else refused
        a = arr.astype(np.float32)
        if not a.size:
            return a.astype(np.uint8)
        if not np.all(np.isfinite(a)):
            raise VrferError("float image with NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo >= -FLOAT_SLACK and hi <= 1.0 + FLOAT_SLACK:
            a = np.clip(a, 0.0, 1.0) * 255.0
        elif not (lo >= -255 * FLOAT_SLACK and hi <= 255 * (1 + FLOAT_SLACK)):
            raise VrferError(f"float image with values from {lo:g} to {hi:g}: expected 0 to 1 or 0 to 255")
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        a = arr.astype(np.int64)
        hi = int(a.max()) if a.size else 0
        if a.size and int(a.min()) >= 0 and hi > 255:
            a = a * 255 // (65535 if hi <= 65535 else hi)
        return np.clip(a, 0, 255).astype(np.uint8)
    raise VrferError(f"unsupported pixel type {arr.dtype}")


def image_from_array(arr) -> np.ndarray:
    """A numpy image -> uint8 gray (H, W) or BGR (H, W, 3). 3 channels are taken as BGR (OpenCV's
    order), 4 as BGRA (alpha dropped); 16-bit and float images are scaled to 8 bits."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise VrferError(f"image array of shape {arr.shape}: expected (H, W), (H, W, 3) or (H, W, 4)")
    arr = _scale_to_uint8(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def image_from_pil(im) -> np.ndarray:
    """A PIL image of any mode -> uint8 gray (H, W) or BGR (H, W, 3). 16-bit and 32-bit images are
    scaled to 8 bits (16-bit: the high byte), CMYK/YCbCr/LAB/HSV become RGB, transparency is laid over white."""
    from PIL import Image
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        return image_from_array(arr)
    if mode == "1":
        return np.asarray(im.convert("L"))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, rgba).convert("RGB")
    elif mode == "L":
        return np.asarray(im)
    elif mode != "RGB":
        im = im.convert("RGB")
    import cv2
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)    # a channel swap, faster than numpy's


def load_image(src, max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] | None = None,
               shrink_jpeg: bool = True) -> np.ndarray:
    """A path, encoded bytes, numpy array or PIL image -> uint8 gray (H, W) or BGR (H, W, 3).

    Bad input raises VrferError with one clear sentence: missing, empty (0 bytes), not an image (or not
    one of `formats`, PIL format names), truncated or damaged, or larger than `max_pixels`
    (ImageTooLargeError; with shrink_jpeg a JPEG that large is decoded at 1/2, 1/4 or 1/8 scale instead,
    which costs no more memory than the smaller image). EXIF orientation is applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    if isinstance(src, np.ndarray):
        return image_from_array(src)
    if isinstance(src, Image.Image):
        return image_from_pil(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise VrferError("empty image (0 bytes)")
        fp = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)):
        if str(src) == "":      # Path("") is the working folder
            raise VrferError("empty path")
        path = Path(src)
        if not path.exists():
            raise VrferError("file not found")
        if path.is_dir():
            raise VrferError("is a folder, not an image")
        if not path.is_file():   # /dev/zero, a pipe: no size to check, and may never end
            raise VrferError(f"not a regular file ({_file_kind(path)}); an image is a file")
        fp = path
    else:
        raise VrferError(f"cannot read an image from {type(src).__name__}: expected a file path (str or "
                         "pathlib.Path), encoded image bytes, a numpy array or a PIL image")
    try:
        if isinstance(fp, Path) and fp.stat().st_size == 0:
            raise VrferError("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=formats)
    except VrferError:
        raise
    except Image.DecompressionBombError:
        size = _header_size(fp)
        if size is None:
            over = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
            raise ImageTooLargeError(f"image too large: over {over:.1f} megapixels (not decoded); the limit is "
                                     f"{max_pixels / 1e6:.1f} megapixels (scale it down first)") from None
        raise _too_large(*size, max_pixels) from None
    except UnidentifiedImageError:
        what = f" ({', '.join(formats)} expected)" if formats else " (unknown or unsupported file format)"
        raise VrferError(f"not an image{what}") from None
    except OSError as e:
        raise VrferError(f"cannot read image: {e}") from None
    with im:
        _one_picture(im)
        w, h = im.size
        if w * h > max_pixels:
            if im.format == "JPEG" and shrink_jpeg:
                k = 2
                while k < 8 and (w // k) * (h // k) > max_pixels:
                    k *= 2
                im.draft(im.mode if im.mode in ("L", "RGB") else "RGB", (w // k, h // k))
            if im.size[0] * im.size[1] > max_pixels:
                raise _too_large(w, h, max_pixels)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im.load()
                if im.getexif().get(0x0112, 1) != 1:      # EXIF orientation (no copy when there is none)
                    im = ImageOps.exif_transpose(im)
            arr = image_from_pil(im)
        except VrferError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            msg = str(e)
            if "truncated" in msg.lower():
                raise VrferError("truncated image file (the file ends before the image does)") from None
            raise VrferError(f"damaged image file ({msg or type(e).__name__})") from None
    if min(arr.shape[:2]) < 1:
        raise VrferError("image has no pixels")
    return arr


def _one_picture(im) -> None:
    """VrferError for an animation or a multi-page file: vrfer reads one picture, never the first of many silently
    (not JPEG: a camera's MPO file holds a preview beside the photo)."""
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and im.format in ("GIF", "PNG", "WEBP", "TIFF"):
        raise VrferError(f"an image of {frames} frames (an animation or a multi-page file): vrfer reads one "
                         "picture, not the first of many silently; give a video file, or one frame")


def _too_large(w: int, h: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"image too large: {w}x{h} = {w * h / 1e6:.1f} megapixels (not decoded); the limit "
                              f"is {max_pixels / 1e6:.1f} megapixels (scale it down first)")


def _header_size(fp) -> tuple[int, int] | None:
    """(width, height) from the image's header, for one PIL refuses to open at all (its decompression-bomb
    limit): the format's own reader, picked as Image.open picks it, reads only the header."""
    from PIL import Image
    Image.init()
    try:
        f = open(fp, "rb") if isinstance(fp, Path) else fp
        with f:
            prefix = f.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept and not accept(prefix):
                    continue
                f.seek(0)
                try:
                    return factory(f, "").size
                except (SyntaxError, IndexError, TypeError, ValueError, OSError, EOFError):
                    continue
    except OSError:
        pass
    return None


def _file_kind(path: Path) -> str:
    from ..files import (
        kind,  # one wording for what a path is, for images, videos, models and profiles
    )
    return kind(path.stat().st_mode)
