"""ECG sources behind one interface: Polar H10 over BLE (``edge_sdk.sources.polar``) and file replay."""
from .base import EcgChunk, EcgSource, SourceEvent
from .replay import ReplaySource

__all__ = ["EcgChunk", "EcgSource", "SourceEvent", "ReplaySource"]
