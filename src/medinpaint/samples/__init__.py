"""Bundled sample cases: 12 DM-i-AI CT slices of validation patients 450-483, one slice each, never trained on."""

from importlib import resources
from pathlib import Path


def sample_dir() -> Path:
    """The DM-i-AI-layout folder of the bundled sample cases."""
    return Path(str(resources.files("medinpaint") / "samples" / "dmiai"))
