"""``python -m ecg_edge`` (and ``torchrun -m ecg_edge distill ...`` for multi-GPU distillation)."""
import sys

from .cli import main

sys.exit(main())
