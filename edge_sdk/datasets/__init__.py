"""Readers for the real data sets in ``shared/data``."""
from .cinc2017 import CINC2017_CLASSES, Cinc2017, split_records
from .mitdb import MitBih, RhythmSegment

__all__ = ["CINC2017_CLASSES", "Cinc2017", "split_records", "MitBih", "RhythmSegment"]
