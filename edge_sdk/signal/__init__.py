"""Streaming signal logic: resampling to the model rate and signal-quality flags."""
from .quality import QualityThresholds, assess_quality
from .resampler import ResampledBlock, StreamingResampler

__all__ = ["QualityThresholds", "assess_quality", "ResampledBlock", "StreamingResampler"]
