"""HTTP serving: a DM-i-AI-compatible inpainting API and a page for people, on one Inpainter."""

from medinpaint.serve.app import create_app

__all__ = ["create_app"]
