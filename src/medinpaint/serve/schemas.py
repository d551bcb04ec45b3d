"""Request and response bodies. `PredictRequest`/`PredictResponse` are the DM-i-AI wire format, field for field."""

from __future__ import annotations

from typing import Any

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from medinpaint.constants import MAX_VERTEBRA

MAX_BATCH_ITEMS = 32


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a vertebra level is a number, not true or false")
    return value


# An integer level, read as DM-i-AI's template reads it (pydantic's lax int: 5, 5.0 and "5" are level 5; 5.5 is refused);
# true and false are refused rather than read as 1 and 0.
Vertebra = Annotated[int, BeforeValidator(_not_a_bool)]


def vertebra_field(default: Any = ...) -> Any:
    return Field(default, ge=0, le=MAX_VERTEBRA, description=f"closest vertebra level, 0..{MAX_VERTEBRA}")


class PredictRequest(BaseModel):
    """One DM-i-AI case: base64 PNGs (256x256, 8-bit grayscale) and the vertebra level."""

    corrupted_image: str = Field(description="base64 PNG of the slice; zeros under the mask")
    tissue_image: str = Field(description="base64 PNG of the tissue map: 0 background, 100 body, 255 fat")
    mask_image: str = Field(description="base64 PNG of the mask: 255 where pixels are missing, else 0")
    vertebrae: Vertebra = vertebra_field()


class PredictResponse(BaseModel):
    reconstructed_image: str = Field(description="base64 PNG of the filled 256x256 slice")


class InpaintRequest(BaseModel):
    """The page's request: the DM-i-AI fields with the side information optional (unknown to the model)."""

    corrupted_image: str
    mask_image: str
    tissue_image: str | None = None
    vertebrae: Vertebra | None = vertebra_field(None)


class BatchRequest(BaseModel):
    items: list[PredictRequest] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchResponse(BaseModel):
    reconstructed_images: list[str]


class Health(BaseModel):
    status: str
    model: str
    checksum: str
    device: str
    backend: str  # torch, onnx or int8: what actually runs the network
    max_batch: int


class SampleCase(BaseModel):
    """A bundled case the page offers: its files are /sample-files/{ct,mask,tissue,corrupted}/<kind>_<id>.png."""

    id: str
    vertebrae: int | None


class ErrorBody(BaseModel):
    detail: str = Field(description="what is wrong, starting with the field")
    field: str = Field(description="the offending field, dotted for nested ones (items.2.mask_image), or 'body'")
