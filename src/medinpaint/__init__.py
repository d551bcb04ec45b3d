"""medinpaint: repair corrupted CT/MRI slices by inpainting, and generate synthetic ones."""

from medinpaint.errors import InputError

__version__ = "0.1.0"

__all__ = ["InputError", "Inpainter", "__version__"]


def __getattr__(name: str):
    # Imported lazily so `import medinpaint` stays fast and torch loads only when a model is needed.
    if name == "Inpainter":
        from medinpaint.inference import Inpainter

        return Inpainter
    raise AttributeError(name)
