"""Readers, writers, patient splits and packed caches for slice datasets."""

from medinpaint.data.readers import read_slices
from medinpaint.data.slices import SliceSet
from medinpaint.data.split import patient_of, split_by_patient

__all__ = ["SliceSet", "patient_of", "read_slices", "split_by_patient"]
