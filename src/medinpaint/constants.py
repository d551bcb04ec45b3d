"""Facts about the data that networks, readers and checkpoints all rely on, kept in one place.

Networks import from here, never from `medinpaint.data`, so a network knows nothing of files.
"""

from __future__ import annotations

TISSUE_LEVELS = (0, 100, 255)  # DM-i-AI tissue map: background, other body tissue, fat
TISSUE_CLASSES = ("background", "body", "fat")  # class id i is TISSUE_LEVELS[i]
MAX_VERTEBRA = 24  # DM-i-AI vertebra levels are 0..24
VERTEBRA_LEVELS = MAX_VERTEBRA + 1
MASK_LEVELS = (0, 1, 255)  # masks as numbers: 0/255 (PNG), 0/1; True marks a missing pixel
DMIAI_WINDOW_HU = (-150.0, 250.0)  # the DM-i-AI slices: Hounsfield units clamped to this window, mapped to 0..255
DMIAI_PIXEL_SPACING_MM = 2.0  # the DM-i-AI slices' in-plane pixel size (issue 15)
