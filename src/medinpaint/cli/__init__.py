"""The `medinpaint` command: thin typer commands over the Python API (`main.py` the inpainting commands,
`synth.py` the `medinpaint synth` group, `options.py` what they share)."""

from medinpaint.cli.main import app

__all__ = ["app"]
