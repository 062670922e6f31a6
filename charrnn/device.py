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


def machine_name(device: torch.device | str = "cpu") -> str:
    """What the device is, in words: the GPU's name, or the CPU's model name ("" when unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        return str(torch.cpu.get_capabilities().get("cpu_name", "")).strip()
    except (AttributeError, RuntimeError):  # torch.cpu.get_capabilities is recent
        return ""
