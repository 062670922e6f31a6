"""Numeric precision: fp32, or bf16 where the hardware computes in it (issue 23, item 2).

`--precision auto|fp32|bf16` of training, `charrnn.evaluate`, `charrnn sample` and the app come
here. bf16 is torch's autocast: the weights stay fp32; matrix products (the LSTM/GRU gates, the
head) run in bf16 with fp32 accumulation; the loss, the scores and the sampling probabilities are
computed in fp32. A model carries the precision it reads and generates with (`model.precision`, set
by `use`, never saved with the weights); the inference code enters `autocast_for(model)` in every
thread that runs it (autocast is per thread).

`auto` is bf16 on CUDA GPUs that support it, and on CPUs with AMX or AVX512-BF16 (torch reports
them in torch.cpu.get_capabilities()); fp32 elsewhere, where bf16 would be emulated and slow.
bench/precision.py measures speed and quality on the machine it runs on (bench/RESULTS.md).
"""
import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_capabilities() -> dict:
    try:
        return dict(torch.cpu.get_capabilities())
    except (AttributeError, RuntimeError):  # an older torch: no report, so no claim of bf16
        return {}


def bf16_hardware(device: torch.device | str) -> str:
    """What does bf16 in hardware on this device ("CUDA", "AMX", "AVX512-BF16"), or "" when nothing does."""
    device = torch.device(device)
    if device.type == "cuda":
        return "CUDA" if torch.cuda.is_bf16_supported() else ""
    caps = cpu_capabilities()
    if caps.get("amx_bf16"):
        return "AMX"
    return "AVX512-BF16" if caps.get("avx512_bf16") else ""


def resolve(name: str, device: torch.device | str) -> str:
    """"fp32" or "bf16" for the asked-for precision on this device; ValueError for an unknown one."""
    name = (name or "auto").strip().lower()
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "auto":
        return "bf16" if bf16_hardware(device) else "fp32"
    return name


def describe(name: str, device: torch.device | str) -> str:
    """One line for the start of a run: what was chosen and why."""
    chosen, hardware = resolve(name, device), bf16_hardware(device)
    kind = torch.device(device).type
    where = f"{kind} with {hardware}" if hardware else f"{kind} without bf16 hardware"
    if (name or "auto").strip().lower() == "auto":
        return f"precision {chosen} (auto: {where})"
    return f"precision {chosen} (asked for; {where})"


def autocast(device_type: str, precision: str):
    """The context that runs `precision` ("fp32": nothing changes) on a device of this type."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use(model: torch.nn.Module, name: str = "auto") -> str:
    """Make `model` read and generate in this precision (resolved for its device); returns it."""
    model.precision = resolve(name, next(model.parameters()).device)
    return model.precision


def autocast_for(model: torch.nn.Module):
    """The autocast context of the model's precision, on its device (fp32 when none was set)."""
    return autocast(next(model.parameters()).device.type, getattr(model, "precision", "fp32"))
