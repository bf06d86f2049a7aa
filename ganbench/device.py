"""Which device a run trains on."""

from __future__ import annotations

import torch

from ganbench.errors import GanbenchError


def resolve_device(name: str) -> torch.device:
    """"auto": CUDA where there is a GPU, else the CPU; "cuda" where there is none is a user's mistake."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GanbenchError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)
