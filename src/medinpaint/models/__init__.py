"""Networks only: no files, masks, schedules or training loops here. Each is built from a config dataclass."""

from medinpaint.models.denoiser import ConditionalUNet, DenoiserConfig
from medinpaint.models.encoder import EncoderConfig, FeatureEncoder
from medinpaint.models.segmenter import SegmentationUNet, SegmenterConfig
from medinpaint.models.unet import MaskAwareUNet, ResUNet, UNetConfig
from medinpaint.models.vae import ConditionalVAE, VAEConfig

__all__ = ["ConditionalUNet", "ConditionalVAE", "DenoiserConfig", "EncoderConfig", "FeatureEncoder", "MaskAwareUNet",
           "ResUNet", "SegmentationUNet", "SegmenterConfig", "UNetConfig", "VAEConfig"]
