"""Numeric precision: fp32, or bf16 where the hardware computes in it (issue 23, item 2).

`--precision auto|fp32|bf16` of training, `charrnn.evaluate`, `charrnn sample` and the app come
here. bf16 is torch's autocast: the weights stay fp32; matrix products (the LSTM/GRU gates, the
head in training) run in bf16 with fp32 accumulation; the loss, the scores and the sampling
probabilities are computed in fp32. A model carries the precision asked for (`model.precision`,
set by `use`, never saved with the weights); each kind of work resolves it for itself and enters
`autocast_for(model, work)` in every thread that runs it (autocast is per thread).

`auto` asks the hardware (CUDA's bf16 support; AMX or AVX512-BF16 in torch.cpu.get_capabilities())
and what bench/precision.py measured (bench/RESULTS.md, "bf16 against fp32"), per kind of work:
- read (evaluate, the Read tab, training's evaluations): bf16 where the hardware does it. On an
  AMD EPYC with AVX512-BF16, 1.7x faster, scores within 0.0001 nats/char of fp32.
- generate (one-char steps): bf16 on CUDA only. On that EPYC a step in bf16 was slower (0.91x:
  autocast casts the weights again at every step), the greedy text the same.
- train: fp32. bf16 kept within 0.003 nats/char of fp32 over the 90 steps measured (1.08x
  faster on that EPYC), but the gate is the long recipe's whole horizon, not yet measured.
`--precision bf16` uses bf16 for all three, wherever it runs.
"""
import contextlib
import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_capabilities() -> dict:
    """torch's report of this CPU's instruction sets (asked once: generation asks at every step)."""
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


WORKS = ("train", "read", "generate")


def auto_bf16(device: torch.device | str, work: str) -> bool:
    """Whether `auto` means bf16 for this work on this device (see the module's docstring)."""
    hardware = bf16_hardware(device)
    if work == "read":
        return bool(hardware)
    if work == "generate":
        return hardware == "CUDA"
    return False  # train: not yet shown within 0.01 nats/char at the long recipe's horizon


def check(name: str) -> str:
    """The precision's name, lower-cased; ValueError for an unknown one."""
    name = (name or "auto").strip().lower()
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    return name


def resolve(name: str, device: torch.device | str, work: str = "read") -> str:
    """"fp32" or "bf16": what the asked-for precision means for this work on this device."""
    name = check(name)
    if name == "auto":
        return "bf16" if auto_bf16(device, work) else "fp32"
    return name


def describe(name: str, device: torch.device | str) -> str:
    """One line for the start of a run: what was chosen for each kind of work, and why."""
    kind, hardware = torch.device(device).type, bf16_hardware(device)
    where = f"{kind} with {hardware}" if hardware else f"{kind} without bf16 hardware"
    chosen = {work: resolve(name, device, work) for work in WORKS}
    if len(set(chosen.values())) == 1:
        what = next(iter(chosen.values()))
    else:
        what = ", ".join(f"{work} {p}" for work, p in chosen.items())
    how = "auto" if check(name) == "auto" else "asked for"
    return f"precision {what} ({how}; {where})"


def autocast(device_type: str, precision: str):
    """The context that runs `precision` ("fp32": nothing changes) on a device of this type."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use(model: torch.nn.Module, name: str = "auto") -> str:
    """Make `model` read, generate (and train) in this precision; returns the checked name."""
    model.precision = check(name)
    return model.precision


def autocast_for(model: torch.nn.Module, work: str):
    """The autocast context of the model's precision for this work, on its device (fp32 when none was set)."""
    device = next(model.parameters()).device
    return autocast(device.type, resolve(getattr(model, "precision", "fp32"), device, work))
