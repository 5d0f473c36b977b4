"""ecg_edge: the command line (``ecg-edge``) tying distill, quantize and edge_sdk together."""
