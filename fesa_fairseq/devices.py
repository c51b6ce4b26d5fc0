"""Where models run: one rule for every command, so the same code serves CPU and CUDA."""

import torch

from fesa_fairseq.errors import FesaError


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU; an explicit CUDA device must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FesaError(f"--device {device} asked for, but torch sees no CUDA device")
    return torch.device(device)
