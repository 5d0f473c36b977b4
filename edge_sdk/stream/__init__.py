"""The streaming pipeline: source -> resampler -> windows -> shared preprocessing -> backend -> predictions."""
from .gateway import EcgGateway
from .latency import LatencyStats
from .pipeline import EcgStream, Prediction
from .recorder import Recorder
from .windower import Window, Windower

__all__ = ["EcgGateway", "EcgStream", "LatencyStats", "Prediction", "Recorder", "Window", "Windower"]
