"""distill: ECGFounder teacher (Net1D) loading and knowledge distillation into compact students."""
from .net1d import ECGFOUNDER_1LEAD, Net1D, Net1DConfig

__all__ = ["ECGFOUNDER_1LEAD", "Net1D", "Net1DConfig"]
