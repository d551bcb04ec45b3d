"""Segmentation: a U-Net on the common training engine, its Python API and the synthetic-data study.

    from medinpaint.segmentation import Segmenter
    seg = Segmenter.from_pretrained()            # the shipped body-composition model (background / body / fat)
    classes = seg.predict(ct_uint8_stack)         # (N, H, W) class ids
    tissue = seg.to_values(classes)               # the same in the label maps' own coding (DM-i-AI: 0 / 100 / 255)
"""

from typing import Any

__all__ = ["Segmenter"]


def __getattr__(name: str) -> Any:
    if name == "Segmenter":  # imported lazily so `medinpaint --help` does not load torch
        from medinpaint.segmentation.inference import Segmenter

        return Segmenter
    raise AttributeError(name)
