"""Turn request fields (base64 PNG strings) into checked uint8 arrays, naming the field in every error."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from medinpaint.data.png import decode_gray_png, encode_gray_png
from medinpaint.constants import TISSUE_LEVELS
from medinpaint.errors import InputError

IMAGE_SIZE = (256, 256)  # every DM-i-AI image is 256x256
MASK_LEVELS = (0, 255)


class FieldError(InputError):
    """Bad input in one request field: answered as a 4xx whose JSON names `field`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message if message.startswith(field) else f"{field}: {message}")
        self.field = field


def decode_image(data: str, field: str, levels: tuple[int, ...] | None = None) -> np.ndarray:
    """Base64 of an 8-bit grayscale 256x256 PNG -> uint8 (256, 256); `levels` are the only values allowed.
    Whitespace (the line breaks of MIME-style base64, a trailing newline) is ignored, as DM-i-AI's template does."""
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FieldError(field, f"invalid base64 ({exc})") from exc
    try:
        image = decode_gray_png(raw, field, IMAGE_SIZE)
    except InputError as exc:
        raise FieldError(field, str(exc)) from exc
    if levels is not None:
        bad = np.setdiff1d(np.unique(image), levels)
        if bad.size:
            allowed = ", ".join(map(str, levels[:-1])) + f" or {levels[-1]}"
            raise FieldError(field, f"values must be {allowed}, found {bad[:5].tolist()}")
    return image


def decode_mask(data: str, field: str) -> np.ndarray:
    """A DM-i-AI mask (0 known, 255 missing) -> bool, True where pixels are to be filled."""
    return decode_image(data, field, MASK_LEVELS) == 255


def decode_tissue(data: str, field: str) -> np.ndarray:
    return decode_image(data, field, TISSUE_LEVELS)


def encode_image(image: np.ndarray) -> str:
    """uint8 (H, W) -> base64 PNG string, as the DM-i-AI evaluation service expects."""
    return base64.b64encode(encode_gray_png(image)).decode("ascii")
