"""Training in named parts: the config and its recipes, build_model, build_optimizer, the lr
schedule, read_batch, optimizer_step, evaluate-and-keep-best, the checkpoint save/load pair,
resume, and `train`, the loop that strings them together.

Stateful truncated BPTT over contiguous streams, AdamW, warmup + cosine, clipping, evaluation on
the whole validation split, early stop, atomic checkpoints with optimizer and RNG state, and a
clean stop on Ctrl-C.
"""
import errno
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import data
from .evaluate import nats_per_char
from .hub import first_line
from .model import CharRNN, State, detach_state
from .text import Vocab

# Two presets. Which one learns more depends on the budget (measured in bench/RESULTS.md, "How the
# default recipes were chosen"): short, one wide GRU layer over 64 streams of 64-char chunks, learns
# the most per CPU second; long, a 2-layer LSTM with dropout over 16 streams, learns slower but
# keeps improving after the short one has flattened.
RECIPES = {
    "short": dict(cell="gru", num_layers=1, dropout=0.2, batch_size=64, seq_len=64, lr=2e-3, epochs=60.0),
    "long": dict(cell="lstm", num_layers=2, dropout=0.25, batch_size=16, seq_len=128, lr=3e-3, epochs=14.0),
}
SHORT_MAX_MINUTES = 10.0  # the largest budget at which the short recipe was measured ahead
_LONG = RECIPES["long"]


def recipe_for_budget(max_minutes: float) -> str:
    """The default recipe: short up to SHORT_MAX_MINUTES of training, long above."""
    return "short" if max_minutes <= SHORT_MAX_MINUTES else "long"


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the long recipe with its 27 minutes: what
    `python train.py` runs. `TrainConfig.from_recipe` starts from a named recipe instead."""
    data: str | None = None  # None: the default corpus (cache, ../shared/data, or download)
    strip_accents: bool = False  # True reproduces the tutorials' accent-free text
    recipe: str = "long"  # the preset the settings below started from (a record: they win)
    # model
    cell: str = _LONG["cell"]
    embed_dim: int = 128
    hidden_size: int = 512
    num_layers: int = _LONG["num_layers"]
    dropout: float = _LONG["dropout"]
    # optimization
    batch_size: int = _LONG["batch_size"]  # contiguous streams
    seq_len: int = _LONG["seq_len"]  # chars per chunk; gradients are truncated at chunk boundaries
    lr: float = _LONG["lr"]
    weight_decay: float = 0.01
    warmup_frac: float = 0.03  # of the run, warming up linearly
    min_lr_frac: float = 0.05  # of lr, where the cosine ends
    grad_clip: float = 1.0
    # budget: the run ends at whichever comes first; the lr schedule follows the same clock
    epochs: float = _LONG["epochs"]
    max_minutes: float = 27.0
    # evaluation
    val_frac: float = 0.2
    eval_every: int = 600  # steps
    eval_streams: int = 16  # see evaluate.nats_per_char; the final score uses 1
    patience: int = 5  # evaluations without improvement before an early stop
    seed: int = 1337
    device: str = "auto"
    out: str = "weights"

    @classmethod
    def from_recipe(cls, recipe: str | None = None, **settings) -> "TrainConfig":
        """The named recipe (None: the one for settings' max_minutes), with `settings` on top."""
        recipe = recipe or recipe_for_budget(settings.get("max_minutes", cls.max_minutes))
        if recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {recipe!r}")
        return cls(**{**RECIPES[recipe], **settings, "recipe": recipe})

    def validate(self) -> "TrainConfig":
        """This config, or a ValueError that names the bad setting."""
        if not isinstance(self.max_minutes, (int, float)) or not self.max_minutes > 0:
            raise ValueError(f"max-minutes must be positive, not {self.max_minutes!r}")
        positive = ["embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "eval_every",
                    "eval_streams", "patience"]
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive whole number, not {v!r}")
        if self.hidden_size > 8192 or self.embed_dim > 8192 or self.num_layers > 16:
            raise ValueError("sizes this large will not train here: hidden/embed at most 8192, at most 16 layers")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be gru or lstm, not {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not (self.lr > 0 and self.epochs > 0 and self.grad_clip > 0):
            raise ValueError("lr, epochs and grad-clip must be positive")
        if not (0 <= self.warmup_frac < 1 and 0 <= self.min_lr_frac <= 1 and 0 < self.val_frac < 1):
            raise ValueError("warmup-frac must be in [0, 1), min-lr-frac in [0, 1], val-frac in (0, 1)")
        return self


@dataclass
class RunState:
    """Where a run is: everything a resumed run needs besides the model, optimizer and RNG."""
    step: int = 0  # optimizer steps taken
    epoch: int = 0
    chunk_index: int = 0  # the next chunk of this epoch's streams to train on
    elapsed_s: float = 0.0  # training time; evaluations and checkpoints are off the clock
    best_val: float = math.inf
    best_step: int = 0
    evals_without_gain: int = 0
    history: list[dict] = field(default_factory=list)  # the metrics.jsonl rows
    best_weights: dict | None = None  # state_dict of the best model so far, on the CPU
    carried: State | None = None  # the recurrent state the next chunk starts from

    def counters(self) -> dict:
        """The plain-number part, as the checkpoint stores it."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("best_weights", "carried")}

    def keep_if_best(self, val: float, model: torch.nn.Module) -> bool:
        """Record an evaluation; copy the weights when it is the best so far."""
        if not val < self.best_val:  # also false for NaN
            self.evals_without_gain += 1
            return False
        self.best_val, self.best_step, self.evals_without_gain = val, self.step, 0
        self.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True


@dataclass
class TrainResult:
    """What `train` returns: the best model (on the CPU) and how it got there."""
    model: CharRNN
    config: TrainConfig
    val_loss: float  # exact: the whole validation split read as one sequence
    best_step: int
    steps: int
    minutes: float
    stop_reason: str  # "budget" or "early stop"
    history: list[dict]
    train_chars: int
    val_chars: int


# ---- the parts ---------------------------------------------------------------------------------

def load_corpus(cfg: TrainConfig) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """Read, normalize, build the vocabulary, encode and split. # (N_train,), (N_val,)"""
    path = Path(cfg.data) if cfg.data else data.find_corpus()
    text = data.read_text(path)
    vocab = Vocab.from_text(text, cfg.strip_accents)
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)
    if len(ids) < data.MIN_CHARS:
        raise data.DataError(f"{path} has {len(ids)} characters; training needs at least {data.MIN_CHARS}")
    if len(vocab) < 2:  # with one character there is nothing to predict
        raise data.DataError(f"{path} holds only one distinct character ({vocab.chars!r}): there is nothing to learn")
    train_ids, val_ids = data.split(ids, cfg.val_frac)
    if len(train_ids) // cfg.batch_size < cfg.seq_len + 1:
        raise data.DataError(f"{len(train_ids)} training chars are too few for {cfg.batch_size} streams "
                             f"of {cfg.seq_len}-char chunks; use a smaller --batch-size or --seq-len")
    return vocab, train_ids, val_ids


def build_model(cfg: TrainConfig, vocab: Vocab, device: torch.device | str = "cpu") -> CharRNN:
    return CharRNN(vocab.chars, cfg.strip_accents, cfg.cell, cfg.embed_dim, cfg.hidden_size,
                   cfg.num_layers, cfg.dropout).to(device)


def build_optimizer(cfg: TrainConfig, model: CharRNN) -> torch.optim.AdamW:
    """AdamW that decays the weight matrices only: biases and the embedding table are not what overfits."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warmup, then cosine from lr down to min_lr_frac * lr, over progress in [0, 1]."""
    if progress < cfg.warmup_frac:
        return cfg.lr * progress / cfg.warmup_frac
    t = min(1.0, (progress - cfg.warmup_frac) / (1 - cfg.warmup_frac))
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    return data.num_chunks(n_train, cfg.batch_size, cfg.seq_len)


def planned_steps(cfg: TrainConfig, n_train: int) -> int:
    """The step at which --epochs ends the run (the time budget may end it sooner)."""
    return max(1, int(cfg.epochs * steps_per_epoch(cfg, n_train)))


def run_progress(cfg: TrainConfig, run: RunState, total_steps: int) -> float:
    """How far along the run is, 0 to 1: by steps or by time, whichever is further."""
    return max(run.step / total_steps, run.elapsed_s / (cfg.max_minutes * 60))


def epoch_offset(cfg: TrainConfig, epoch: int) -> int:
    """A new random offset each epoch moves the chunk boundaries, so the model does not see the same
    windows every time. Seeded by epoch, so a resumed run rebuilds the same ones."""
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    return int(torch.randint(0, cfg.seq_len, (1,), generator=generator))


def chunks_in_epoch(cfg: TrainConfig, n_train: int, epoch: int) -> int:
    return data.num_chunks(n_train, cfg.batch_size, cfg.seq_len, epoch_offset(cfg, epoch))


def read_batch(train_ids: torch.Tensor, cfg: TrainConfig, epoch: int, chunk_index: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk `chunk_index` of this epoch's streams: inputs and next-char targets. # (B, T), (B, T)"""
    text_rows = data.streams(train_ids, cfg.batch_size, epoch_offset(cfg, epoch))  # (B, L), a view
    start = chunk_index * cfg.seq_len
    length = min(cfg.seq_len, text_rows.size(1) - 1 - start)
    x = text_rows[:, start: start + length]
    y = text_rows[:, start + 1: start + 1 + length]
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   grad_clip: float | None = None) -> None:
    """Gradients of `loss`, clipped to `grad_clip` (None: not clipped), then one update."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---- files: checkpoint, metrics, the output folder ---------------------------------------------

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed; the message says which and why."""


def atomic_save(obj, path: Path) -> None:
    """Write to a temp file and rename over the target, so a crash or Ctrl-C never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, cfg: TrainConfig, vocab: Vocab, model: CharRNN,
                    optimizer: torch.optim.Optimizer, run: RunState) -> None:
    atomic_save({"config": asdict(cfg), "vocab": vocab.chars, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                 "progress": run.counters(), "best_model": run.best_weights, "rnn_state": run.carried,
                 "finished": False}, path)


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
        raise CheckpointError(f"{path} is not a charrnn checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    if ckpt.get("finished"):
        raise FileNotFoundError(f"nothing to resume: the run in {path.parent} already finished")
    missing = [k for k in ("config", "model", "optimizer", "rng", "progress", "best_model", "rnn_state")
               if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it has no {', '.join(missing)}")
    return ckpt


OLD_NAMES = {"warmup": "warmup_frac", "min_lr": "min_lr_frac",  # checkpoints of earlier versions
             "chunk": "chunk_index", "elapsed": "elapsed_s", "bad_evals": "evals_without_gain"}
RESUMABLE = ("max_minutes", "epochs", "eval_every", "patience")  # what --resume may change


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
                       cfg: TrainConfig, path: Path) -> RunState:
    """Load the model, optimizer and RNG state, each checked first; the run's state is returned."""
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
        counters = {OLD_NAMES.get(k, k): v for k, v in ckpt["progress"].items()}
        run = RunState(**counters, best_weights=ckpt["best_model"], carried=ckpt["rnn_state"])
        check_carried(run.carried, model.init_state(cfg.batch_size))
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        check_optimizer(optimizer)
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as e:
        raise CheckpointError(f"{path} is damaged: {first_line(e)}") from None
    torch.set_rng_state(rng)
    device = next(model.parameters()).device
    run.carried = None if run.carried is None else (
        tuple(t.to(device) for t in run.carried) if isinstance(run.carried, (tuple, list)) else run.carried.to(device))
    return run


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
                    raise ValueError(f"its optimizer's {name} is {list(value.shape)} for a {list(p.shape)} parameter")


def check_out_dir(out: Path) -> None:
    """Make sure `out` is a folder we can write to, before any work: a bad --out fails now, not
    after training. ValueError says what is wrong."""
    try:
        nearest = next(p for p in [out, *out.parents] if p.exists())
        if not nearest.is_dir():
            raise ValueError(f"--out {out} is a file, not a folder" if nearest == out else
                             f"--out {out} lies under {nearest}, which is a file")
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise ValueError(f"--out is too long a path for this file system ({len(str(out))} chars, "
                             f"starting {str(out)[:40]}...)") from None
        raise ValueError(f"--out {out} cannot be written: {e.strerror or first_line(e)}") from None


def write_metrics(path: Path, rows: list[dict]) -> None:
    """metrics.jsonl as the checkpoint knows it: on resume, rows written after the last checkpoint
    (a kill during a save) are dropped, so no step appears twice."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, path)


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# ---- stopping and showing progress -------------------------------------------------------------

class Interrupted(Exception):
    """Training was stopped by Ctrl-C; `path` holds the checkpoint to resume from."""

    def __init__(self, path: Path, step: int, saved: bool = True):
        self.path, self.step = path, step
        where = f"checkpoint saved to {path}" if saved else f"the last checkpoint in {path} is kept"
        super().__init__(f"interrupted at step {step}; {where}")


class StopRequest:
    """The first Ctrl-C only sets `requested`, so the loop stops between two steps with a
    consistent model, optimizer and carried state; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)",
              file=sys.stderr, flush=True)

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


@dataclass
class Window:
    """Training loss and speed since the last evaluation (what a metrics row reports)."""
    loss_sum: float = 0.0
    steps: int = 0
    chars: int = 0
    started: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, chars: int) -> None:
        self.loss_sum, self.steps, self.chars = self.loss_sum + loss, self.steps + 1, self.chars + chars

    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.steps)

    def chars_per_s(self) -> float:
        return self.chars / max(1e-9, time.perf_counter() - self.started)


class ProgressBar:
    """tqdm over optimizer steps. Its total is the step the run will end at: the epoch limit, or
    sooner where the time budget runs out first at the pace measured so far."""

    def __init__(self, cfg: TrainConfig, total_steps: int, run: RunState):
        self.cfg, self.total_steps = cfg, total_steps
        self.bar = tqdm(total=self.expected_total(run), initial=run.step, unit="step", dynamic_ncols=True,
                        mininterval=1.0 if sys.stderr.isatty() else 60.0)

    def expected_total(self, run: RunState) -> int:
        if run.step == 0:
            return self.total_steps
        seconds_left = max(0.0, self.cfg.max_minutes * 60 - run.elapsed_s)
        return min(self.total_steps, run.step + int(seconds_left / (run.elapsed_s / run.step)))

    def update(self, run: RunState, window: Window) -> None:
        self.bar.total = max(run.step, self.expected_total(run))
        postfix = {"loss": f"{window.mean_loss():.3f}"}
        if run.history:
            postfix.update(val=f"{run.history[-1]['val_loss']:.4f}", best=f"{run.best_val:.4f}")
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(run.step - self.bar.n)

    def close(self, run: RunState) -> None:
        self.bar.total = run.step  # the true total, once it is known
        self.bar.refresh()
        self.bar.close()


# ---- the loop ----------------------------------------------------------------------------------

def evaluate_and_save(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                      run: RunState, window: Window, val_ids: torch.Tensor, epochs: float, out: Path) -> None:
    """Score the validation split, keep the best weights, checkpoint, then append the metrics row
    (in that order: a kill during the save leaves no row that the checkpoint does not know)."""
    val = nats_per_char(model, val_ids, streams=cfg.eval_streams)
    run.history.append(dict(step=run.step, epoch=round(epochs, 3), elapsed_s=round(run.elapsed_s, 1),
                            train_loss=round(window.mean_loss(), 4), val_loss=round(val, 4),
                            lr=optimizer.param_groups[0]["lr"], chars_per_s=round(window.chars_per_s(), 1)))
    run.keep_if_best(val, model)
    save_checkpoint(out / CHECKPOINT, cfg, vocab, model, optimizer, run)
    append_jsonl(out / METRICS, run.history[-1])


def advance(run: RunState, cfg: TrainConfig, n_train: int, clock: float) -> float:
    """Count the step just taken: step, chunk, epoch and training time. Returns the new clock."""
    run.step, run.chunk_index = run.step + 1, run.chunk_index + 1
    if run.chunk_index == chunks_in_epoch(cfg, n_train, run.epoch):
        run.epoch, run.chunk_index = run.epoch + 1, 0
    now = time.perf_counter()
    run.elapsed_s += now - clock
    return now


def train_loop(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
               run: RunState, train_ids: torch.Tensor, val_ids: torch.Tensor, out: Path) -> str:
    """Step until the budget, an early stop or Ctrl-C; returns why it stopped."""
    device = next(model.parameters()).device
    total_steps = planned_steps(cfg, len(train_ids))
    epoch_steps = steps_per_epoch(cfg, len(train_ids))
    stop, bar, window = StopRequest(), ProgressBar(cfg, total_steps, run), Window()
    model.train()
    clock = time.perf_counter()
    try:
        while run_progress(cfg, run, total_steps) < 1:
            x, y = read_batch(train_ids, cfg, run.epoch, run.chunk_index, device)  # (B, T), (B, T)
            if run.chunk_index == 0:
                run.carried = None  # each epoch reads the streams from their start
            set_lr(optimizer, lr_at(cfg, run_progress(cfg, run, total_steps)))
            _, state, loss = model(x, run.carried, targets=y)
            optimizer_step(model, optimizer, loss, cfg.grad_clip)
            run.carried = detach_state(state)  # committed only once the step is complete
            clock = advance(run, cfg, len(train_ids), clock)
            window.add(loss.item(), x.numel())
            bar.update(run, window)

            finished = run_progress(cfg, run, total_steps) >= 1
            if run.step % cfg.eval_every == 0 or finished:
                evaluate_and_save(cfg, vocab, model, optimizer, run, window, val_ids, run.step / epoch_steps, out)
                window, clock = Window(), time.perf_counter()  # evaluation time is not training time
                if run.evals_without_gain >= cfg.patience:
                    return "early stop"
            if stop.requested:
                save_checkpoint(out / CHECKPOINT, cfg, vocab, model, optimizer, run)
                raise Interrupted(out / CHECKPOINT, run.step)
        return "budget"
    except KeyboardInterrupt:  # a second Ctrl-C: the step may be half done, so keep the last checkpoint
        raise Interrupted(out / CHECKPOINT, run.step, saved=False) from None
    finally:
        bar.close(run)
        stop.restore()


def train(cfg: TrainConfig, resume: bool = False, device: torch.device | None = None, log=print,
          given: set[str] = frozenset()) -> TrainResult:
    """Train, keep the best model by validation loss, and return it with how it got there.

    With resume=True, continue from {out}/checkpoint.pt: model, optimizer, schedule position, data
    position, carried state and RNG state are restored, so the rest of the run is the one an
    uninterrupted run would have done (up to the time budget already spent). `given` names the
    settings the user set: of those, a resumed run applies RESUMABLE and reports the others ignored."""
    device = device or torch.device("cpu")
    out = Path(cfg.out)
    ckpt = load_checkpoint(out / CHECKPOINT) if resume else None
    if ckpt is not None:
        cfg = resumed_config(ckpt, cfg, set(given), out / CHECKPOINT, log)
    cfg = cfg.validate()
    check_out_dir(out)  # now, not after training
    vocab, train_ids, val_ids = load_corpus(cfg)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, vocab, device)
    optimizer = build_optimizer(cfg, model)
    run = RunState()
    if ckpt is not None:  # every check passes before any file is written
        run = restore_checkpoint(ckpt, vocab, model, optimizer, cfg, out / CHECKPOINT)
        log(f"resuming from step {run.step} (epoch {run.epoch}, {run.elapsed_s / 60:.1f} min done)")
    write_metrics(out / METRICS, run.history)  # a fresh file, or the rows the checkpoint knows
    log(f"{model.num_params():,} parameters, vocab {len(vocab)}, {len(train_ids):,} train / "
        f"{len(val_ids):,} val chars, {steps_per_epoch(cfg, len(train_ids))} steps per epoch, "
        f"{cfg.recipe} recipe, device {device}")

    stop_reason = train_loop(cfg, vocab, model, optimizer, run, train_ids, val_ids, out)
    return finish(cfg, model, run, stop_reason, len(train_ids), val_ids, out, log)


def finish(cfg: TrainConfig, model: CharRNN, run: RunState, stop_reason: str, train_chars: int,
           val_ids: torch.Tensor, out: Path, log) -> TrainResult:
    """Back to the best weights, the exact score, and the checkpoint marked finished."""
    if run.best_weights is None:
        raise ValueError("the validation loss was never a finite number: training diverged; try a lower --lr")
    model.load_state_dict(run.best_weights)
    val = nats_per_char(model, val_ids, streams=1)  # the exact score, as charrnn.evaluate computes it
    atomic_save({"config": asdict(cfg), "finished": True, "progress": run.counters()}, out / CHECKPOINT)
    log(f"stopped ({stop_reason}) after {run.step} steps, {run.elapsed_s / 60:.1f} min; "
        f"best val {val:.4f} nats/char ({val / math.log(2):.4f} bits) at step {run.best_step}")
    return TrainResult(model=model.cpu(), config=cfg, val_loss=val, best_step=run.best_step, steps=run.step,
                       minutes=run.elapsed_s / 60, stop_reason=stop_reason, history=run.history,
                       train_chars=train_chars, val_chars=len(val_ids))
