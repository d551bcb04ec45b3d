"""Strict 8-bit grayscale PNG decoding and encoding, shared by the folder readers and the server."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medinpaint.data.files import reading
from medinpaint.errors import InputError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_gray_png(data: bytes, name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """PNG bytes -> uint8 (H, W). `name` (a file or a field) is named in every error. With `size` (H, W), an image
    of another size is refused from its header, before its pixels are decompressed: a few hundred kB of PNG can
    hold gigabytes of pixels."""
    if not data.startswith(PNG_MAGIC):
        raise InputError(f"{name}: not a PNG image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            mode = im.mode
            if mode not in ("L", "1"):
                kind = "16-bit" if mode.startswith("I") else f"colour ({mode})" if mode in ("RGB", "RGBA", "P", "LA") else mode
                raise InputError(f"{name}: expected an 8-bit grayscale PNG, got a {kind} image")
            if size is not None and im.size != (size[1], size[0]):
                raise InputError(f"{name}: expected a {size[1]}x{size[0]} image, got {im.size[0]}x{im.size[1]}")
            arr = np.array(im.convert("L"))
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: image too large to decode ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{name}: unreadable PNG (not a valid image)") from exc
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:  # Pillow's kinds of damaged PNG
        raise InputError(f"{name}: unreadable PNG ({exc})") from exc
    return arr


def read_gray_png(path: Path) -> np.ndarray:
    """A PNG file -> uint8 (H, W), with the file named in any error."""
    with reading(path):
        data = Path(path).read_bytes()
    return decode_gray_png(data, str(path))


def encode_gray_png(image: np.ndarray) -> bytes:
    """uint8 (H, W) -> PNG bytes."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a uint8 (H, W) image, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_gray_png(path: Path, image: np.ndarray) -> None:
    Path(path).write_bytes(encode_gray_png(image))
