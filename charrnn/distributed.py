"""Several processes training one model (DistributedDataParallel), as torchrun launches them.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; `setup` joins the process group
(gloo on the CPU, nccl on CUDA, each process on its own GPU cuda:LOCAL_RANK). Without torchrun
nothing is set up: one process, world size 1, no collective calls, so a plain run is unchanged.
Every helper here is a no-op in that case.
"""
import os

import torch
import torch.distributed as dist


def launched_by_torchrun(env=os.environ) -> bool:
    return "RANK" in env and "WORLD_SIZE" in env


def backend_for(device: torch.device | str) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group, if launched by it; returns this process's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":  # one GPU per process on each machine
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend_for(device))
    return device


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 alone evaluates, writes files and pushes."""
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model DDP-wrapped for the forward/backward (gradients averaged across ranks in backward;
    rank 0's parameters are broadcast at construction), or the model itself in one process."""
    if not dist.is_initialized():
        return model
    device = next(model.parameters()).device
    return torch.nn.parallel.DistributedDataParallel(model,
                                                     device_ids=[device] if device.type == "cuda" else None)


def sync_step(elapsed_s: float, loss: float, stop: bool, device: torch.device) -> tuple[float, float, bool]:
    """What all ranks must agree on after a step: rank 0's training clock (so the time budget and lr
    schedule end every rank at the same step), the mean loss, and whether any rank was asked to stop."""
    if not dist.is_initialized():
        return elapsed_s, loss, stop
    t = torch.tensor([elapsed_s if is_main() else 0.0, loss, float(stop)], dtype=torch.float64, device=device)
    dist.all_reduce(t)  # sum: only rank 0 adds its clock
    return float(t[0]), float(t[1]) / world_size(), bool(t[2] > 0)


def broadcast_number(x: float, device: torch.device) -> float:
    """Rank 0's number (e.g. a time only rank 0 measured), for every rank."""
    if not dist.is_initialized():
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return float(t[0])


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision (an early stop), for every rank."""
    return broadcast_number(float(flag), device) > 0


def gather_rows(state):
    """Every rank's recurrent state, joined along the batch dim: rank r's rows follow rank r-1's,
    the layout of one process training on all rows. # (L, B, H) per rank -> (L, W*B, H)"""
    if not dist.is_initialized() or state is None:
        return state
    parts = [state] if torch.is_tensor(state) else list(state)
    joined = []
    for t in parts:
        pieces = [torch.empty_like(t) for _ in range(world_size())]
        dist.all_gather(pieces, t.contiguous())
        joined.append(torch.cat(pieces, dim=1))
    return joined[0] if torch.is_tensor(state) else tuple(joined)


def my_rows(state, batch_size: int):
    """This rank's rows of a joined state (what gather_rows made). # (L, W*B, H) -> (L, B, H)"""
    if state is None or not dist.is_initialized():
        return state
    rows = slice(rank() * batch_size, (rank() + 1) * batch_size)
    if torch.is_tensor(state):
        return state[:, rows].contiguous()
    return tuple(t[:, rows].contiguous() for t in state)
