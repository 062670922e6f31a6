"""Checkpoints: the run's state (RunState), saving it with the model, optimizer and RNG, and
loading it back for --resume with every part checked first, so a damaged or mismatched file gives
one clear message before anything is written."""
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from .config import REGULARIZERS_OFF, RESUMABLE, TrainConfig, recipe_for_budget
from .model import CharRNN, State
from .text import Vocab
from .weights import first_line

CHECKPOINT = "checkpoint.pt"
OLD_NAMES = {"warmup": "warmup_frac", "min_lr": "min_lr_frac",  # checkpoints of earlier versions
             "chunk": "chunk_index", "elapsed": "elapsed_s", "bad_evals": "evals_without_gain",
             "seed": "training_seed", "eval_streams": "eval_rows"}


@dataclass
class RunState:
    """Where a run is: everything a resumed run needs besides the model, optimizer and RNG."""
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    chunk_index: int = 0  # the next chunk of this epoch's rows to train on
    # the run's time from its first step: training, evaluations and checkpoints (budget.py)
    elapsed_s: float = 0.0
    best_val: float = math.inf
    best_step: int = 0
    evals_without_gain: int = 0
    history: list[dict] = field(default_factory=list)  # the metrics.jsonl rows
    best_weights: dict | None = None  # state_dict of the best model so far, on the CPU
    # the recurrent state the next chunk starts from (every rank's, in a checkpoint)
    carried: State | None = None
    # processes training together (torchrun); the text is cut into world_size * batch_size rows
    world_size: int = 1
    # the moving average of the weights (an AveragedModel), when ema_decay > 0
    ema: torch.nn.Module | None = None

    def counters(self) -> dict:
        """The plain-number part, as the checkpoint stores it."""
        skip = ("best_weights", "carried", "ema")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "RunState":
        """The state a checkpoint saved (TypeError or ValueError if it is not one)."""
        counters = {OLD_NAMES.get(k, k): v for k, v in ckpt["progress"].items()}
        run = cls(**counters, best_weights=ckpt["best_model"], carried=ckpt["rnn_state"])
        numbers = [f.name for f in fields(cls) if f.type in (int, float)]
        counted = all(isinstance(getattr(run, n), (int, float)) for n in numbers)
        if not counted or not isinstance(run.history, list):
            raise ValueError("its progress counters are not numbers")
        return run

    def keep_if_best(self, val: float, model: torch.nn.Module) -> bool:
        """Record an evaluation; copy the weights when it is the best so far."""
        if not val < self.best_val:  # also false for NaN
            self.evals_without_gain += 1
            return False
        self.best_val, self.best_step, self.evals_without_gain = val, self.step, 0
        self.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed; the message says which and why."""


def atomic_save(obj, path: Path) -> None:
    """Write to a temp file and rename over the target, so a crash or Ctrl-C never leaves half a file.
    A write that fails (a full disk: OSError, or torch's RuntimeError from its zip writer) removes
    the temp file and keeps the previous checkpoint, and is a CheckpointError that says so."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # else a full disk stays full and --resume cannot write either
        if not isinstance(e, (OSError, RuntimeError)):
            raise
        kept = "the previous checkpoint is kept" if path.is_file() else "no checkpoint was kept"
        raise CheckpointError(f"could not write {path}: {getattr(e, 'strerror', None) or first_line(e)}; "
                              f"{kept}: make room, then continue with --resume") from None


def save_checkpoint(path: Path, cfg: TrainConfig, vocab: Vocab, model: CharRNN,
                    optimizer: torch.optim.Optimizer, run: RunState) -> None:
    atomic_save({"config": asdict(cfg), "vocab": vocab.chars, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                 "progress": run.counters(), "best_model": run.best_weights, "rnn_state": run.carried,
                 "ema": None if run.ema is None else run.ema.state_dict(), "finished": False}, path)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path` if it can be resumed; else FileNotFoundError or CheckpointError."""
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, empty, random bytes, a pickle of something else
        raise CheckpointError(f"{path} is damaged or not a charrnn checkpoint ({first_line(e)}); "
                              f"train without --resume to start over") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} is not a charrnn checkpoint: it holds a {type(ckpt).__name__}, not a "
                              "dict")
    if ckpt.get("finished"):
        raise FileNotFoundError(f"nothing to resume: the run in {path.parent} already finished")
    missing = [k for k in ("config", "model", "optimizer", "rng", "progress", "best_model", "rnn_state")
               if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it has no {', '.join(missing)}")
    return ckpt


def resumed_config(ckpt: dict, cfg: TrainConfig, given: set[str], path: Path, log) -> TrainConfig:
    """The checkpoint's settings, with `cfg`'s out, device, and those of `given` that a resumed run
    can change (RESUMABLE); the other given ones are named as ignored."""
    saved = ckpt["config"]
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} is damaged: its settings are not a dict")
    saved = {OLD_NAMES.get(k, k): v for k, v in saved.items()}
    unknown = sorted(set(saved) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise CheckpointError(f"{path} has settings this version does not know: {', '.join(unknown)}")
    saved.setdefault("recipe", recipe_for_budget(saved.get("max_minutes", TrainConfig.max_minutes)))
    # a checkpoint from before a setting existed trained without it
    for name, off in REGULARIZERS_OFF.items():
        saved.setdefault(name, off)
    try:
        resumed = replace(TrainConfig(**saved), out=cfg.out, device=cfg.device).validate()
    except ValueError as e:
        raise CheckpointError(f"{path} has a bad setting: {e}") from None
    ignored = sorted(set(given) - set(RESUMABLE) - {"out", "device"})
    if ignored:
        log(f"--resume continues with the checkpoint's settings; ignored: "
            f"{', '.join('--' + n.replace('_', '-') for n in ignored)}")
    return replace(resumed, **{k: getattr(cfg, k) for k in given if k in RESUMABLE})


def restore_checkpoint(ckpt: dict, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                       cfg: TrainConfig, path: Path, world_size: int = 1) -> RunState:
    """Load the model, optimizer and RNG state, each checked first; the run's state is returned.
    Resumed by another number of processes, the run starts the next epoch: its rows are cut anew."""
    if ckpt.get("vocab", vocab.chars) != vocab.chars:
        raise CheckpointError(f"{path} was trained on another vocabulary ({len(ckpt['vocab'])} chars) than "
                              f"the corpus gives now ({len(vocab)}): is --data the same text?")
    expected = model.state_dict()
    for name, weights in (("weights", ckpt["model"]), ("best weights", ckpt["best_model"])):
        problem = mismatch(expected, weights, allow_none=name == "best weights")
        if problem:
            raise CheckpointError(f"{path}: its {name} do not fit its settings: {problem}")
    rng = ckpt["rng"]
    if not (torch.is_tensor(rng) and rng.dtype == torch.uint8 and rng.shape == torch.get_rng_state().shape):
        raise CheckpointError(f"{path} is damaged: its random-number state is not a CPU generator state")
    try:
        run = RunState.from_checkpoint(ckpt)
        if run.world_size != world_size:
            run.epoch, run.chunk_index, run.carried = run.epoch + int(run.chunk_index > 0), 0, None
            run.world_size = world_size
        check_carried(run.carried, model.init_state(cfg.batch_size * world_size))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        check_optimizer(optimizer)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path} is damaged: {first_line(e)}") from None
    torch.set_rng_state(rng)
    device = next(model.parameters()).device
    run.carried = None if run.carried is None else (
        tuple(t.to(device) for t in run.carried) if isinstance(run.carried,
                                                               (tuple, list)) else run.carried.to(device))
    return run


def check_position(run: RunState, chunks: int, path: Path) -> None:
    """The data position must lie inside the epoch it names (`chunks` of them): a damaged counter
    would otherwise read outside the text."""
    if not 0 <= run.chunk_index < max(1, chunks) or run.epoch < 0 or run.step < 0 or not (
            math.isfinite(run.elapsed_s) and run.elapsed_s >= 0):
        raise CheckpointError(f"{path} is damaged: its position (step {run.step}, epoch {run.epoch}, chunk "
                              f"{run.chunk_index} of {chunks}, {run.elapsed_s} s) is not one this run can "
                              "reach")


def mismatch(expected: dict, got, allow_none: bool = False) -> str | None:
    """What differs between two state_dicts (names and shapes), or None when they fit."""
    if got is None and allow_none:
        return None
    if not isinstance(got, dict):
        return f"a {type(got).__name__}, not a state_dict"
    names = set(expected) ^ set(got)
    if names:
        return f"tensors {', '.join(sorted(names)[:3])} are missing or extra"
    for name, tensor in expected.items():
        if not torch.is_tensor(got[name]) or got[name].shape != tensor.shape:
            shape = list(got[name].shape) if torch.is_tensor(got[name]) else type(got[name]).__name__
            return f"{name} is {shape} there, {list(tensor.shape)} in a model of these settings"
    return None


def check_carried(carried, zero: State) -> None:
    """The saved recurrent state must have the shapes of the model's own. # (L, B, H)"""
    if carried is None:
        return
    got = [carried] if torch.is_tensor(carried) else list(carried)
    want = [zero] if torch.is_tensor(zero) else list(zero)
    if len(got) != len(want) or any(not torch.is_tensor(g) or g.shape != w.shape for g, w in zip(got, want)):
        raise ValueError("its recurrent state does not fit the model")


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Moment tensors of another shape would only fail at the first step: fail now instead."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"its optimizer's {name} is {list(value.shape)} for a {list(p.shape)} "
                                     "parameter")


def mark_finished(path: Path, cfg: TrainConfig, run: RunState) -> None:
    """Replace the checkpoint by a marker: the run is over, there is nothing to resume."""
    atomic_save({"config": asdict(cfg), "finished": True, "progress": run.counters()}, path)
