"""Pick the torch device: CUDA when there is one, else the CPU, unless told otherwise."""
import os

import torch


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' (or None) means $CHARRNN_DEVICE if set, else cuda when available, else cpu."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = os.environ.get("CHARRNN_DEVICE", "").strip().lower() or (
            "cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here; use cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda") from None
