"""Polar sensors over BLE. ``PolarH10Source`` needs ``bleak`` (``pip install 'ecg-edge[ble]'``)."""
from .pmd import PmdError


def __getattr__(name: str):
    if name == "PolarH10Source":
        from .h10 import PolarH10Source
        return PolarH10Source
    raise AttributeError(name)


__all__ = ["PmdError", "PolarH10Source"]
