"""How every results table states a figure measured over seeds, so that the tables' spreads compare."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_sd(values: Sequence[float]) -> str:
    """`mean ± sd`, the sd of a sample (n - 1 in the denominator: the seeds are a sample of the runs one could make);
    the mean alone for a single value."""
    values = [float(v) for v in values]
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")
