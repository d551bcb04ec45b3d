"""Fill the gaps of an unlabelled set by training on clean (real or synthetic) slices corrupted the same way."""

from medinpaint.fillgaps.datasets import corrupted_pairs, target_dataset
from medinpaint.fillgaps.detect import Corruption, detect_corruption
from medinpaint.fillgaps.pattern import StripePattern, find_stripes
from medinpaint.fillgaps.pipeline import FillResult, fill_gaps

__all__ = ["Corruption", "FillResult", "StripePattern", "corrupted_pairs", "detect_corruption", "fill_gaps",
           "find_stripes", "target_dataset"]
