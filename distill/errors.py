"""Named exceptions of training (distill, quantize). They derive from :class:`edge_sdk.errors.EdgeSDKError`,
the project's one base class, so the CLI reports them the same way."""
from __future__ import annotations

from edge_sdk.errors import EdgeSDKError


class DistillError(EdgeSDKError):
    """Base of the errors raised on purpose by distill and quantize."""


class CheckpointError(DistillError):
    """A model checkpoint cannot be loaded (wrong format, keys, shapes, config, or non-finite weights)."""
