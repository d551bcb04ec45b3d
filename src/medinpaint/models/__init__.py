"""Networks only: no files, masks or schedules here."""

from medinpaint.models.unet import MaskAwareUNet, UNetConfig

__all__ = ["MaskAwareUNet", "UNetConfig"]
