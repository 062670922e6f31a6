"""The training loop and its named parts: build_model, build_optimizer, the lr schedule (lr_at),
get_batch, optimizer_step, evaluate_and_save (evaluate, keep the best, checkpoint, metrics row),
and `train`, which strings them together. Settings and recipes are in config.py; checkpoints and
resuming in checkpoint.py.

Stateful truncated BPTT over contiguous rows of the text, loaded from the corpus's token file (a memmap),
AdamW, warmup + cosine, clipping, evaluation on the validation split (its start when large), early
stop, atomic checkpoints with optimizer and RNG state, and a clean stop on Ctrl-C. Under torchrun,
DistributedDataParallel (distributed.py): each rank trains on its own rows, rank 0 alone evaluates
and writes.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub import metadata_load
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import corpus_profile, data, distributed, threads
from .budget import Budget, estimate
from .checkpoint import (
    CHECKPOINT,
    CheckpointError,
    RunState,
    check_position,
    load_checkpoint,
    mark_finished,
    restore_checkpoint,
    resumed_config,
    save_checkpoint,
)
from .config import TrainConfig
from .device import machine_name
from .hub import SNAPSHOTS
from .model import detach_state
from .precision import autocast_for, describe, use
from .pretrained import CharRNN
from .snapshots import Keeper
from .sources import open_source
from .text import Vocab
from .validation import nats_per_char
from .weights import first_line


@dataclass
class TrainResult:
    """What `train` returns: the best model (on the CPU) and how it got there."""
    model: CharRNN
    config: TrainConfig
    val_loss: float  # exact: the evaluated validation chars (corpus.eval_chars) read as one sequence
    best_step: int
    steps: int
    minutes: float  # the whole run: setting up, training, evaluations and the final exact score
    stop_reason: str  # "budget" or "early stop"
    history: list[dict]
    corpus: data.CorpusInfo  # what was read: name, sizes, and how many validation chars were evaluated
    # the corpus as pages tell it, with the validation score
    profile: corpus_profile.CorpusProfile | None = None
    machine: str = ""  # the processor it trained on (CPU model or GPU name), for the loss plot's axis


# ---- the parts ---------------------------------------------------------------------------------

def open_corpus(cfg: TrainConfig, log=print, world_size: int = 1) -> data.Corpus:
    """The config's corpus as a token file on disk (prepared once, then found by content hash),
    split by position, with the bounded slice of validation that evaluations read."""
    source = open_source(cfg.data, cfg.dataset, cfg.dataset_config, cfg.text_column)
    corpus = data.load(source, cfg.strip_accents, cfg.val_frac, cfg.max_eval_chars, log)
    rows = cfg.batch_size * world_size
    if len(corpus.train) // rows < cfg.seq_len + 1:
        raise data.DataError(f"{len(corpus.train)} training chars are too few for {rows} rows "
                             f"of {cfg.seq_len}-char chunks; use a smaller --batch-size or --seq-len")
    return corpus


def open_corpus_rank0_first(cfg: TrainConfig, log=print) -> data.Corpus:
    """open_corpus, with rank 0 preparing the token file while the other ranks wait, then find it
    in the cache (a simultaneous preparation would be safe, the cache's rename being atomic, but wasted)."""
    if not distributed.is_main():
        distributed.barrier()
    corpus = open_corpus(cfg, log, distributed.world_size())
    if distributed.is_main():
        distributed.barrier()
    return corpus


def describe_corpus(cfg: TrainConfig, corpus: data.Corpus, log=print) -> corpus_profile.CorpusProfile:
    """The corpus as the card, the app and the Space tell it (corpus_profile), from the start of
    its validation split; the score is added when training is done."""
    info = corpus.info
    from_hub = cfg.dataset is not None and not Path(cfg.dataset).exists()
    return corpus_profile.from_corpus(
        corpus.val_text(corpus_profile.SAMPLE_CHARS), corpus.vocab.chars, name=info.name, digest=info.sha256,
        source=cfg.data or cfg.dataset, dataset_id=cfg.dataset if from_hub else None, chars=info.chars,
        title=cfg.title, description=cfg.description, language=cfg.language, log=log)


def load_corpus(cfg: TrainConfig, log=print) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """The vocabulary and the whole train and validation splits in memory, for small corpora
    (the bench's tutorial recipes index them freely). # (N_train,), (N_val,)"""
    corpus = open_corpus(cfg, log)
    return corpus.vocab, data.as_tensor(corpus.train), data.as_tensor(corpus.val)


def build_model(cfg: TrainConfig, vocab: Vocab, device: torch.device | str = "cpu") -> CharRNN:
    return CharRNN(vocab.chars, cfg.strip_accents, cfg.cell, cfg.embed_dim, cfg.hidden_size, cfg.num_layers,
                   cfg.dropout, cfg.locked_dropout, cfg.embed_dropout, cfg.weight_drop).to(device)


def build_ema(cfg: TrainConfig, model: CharRNN, ckpt: dict | None = None) -> AveragedModel | None:
    """An exponential moving average of the weights (torch's AveragedModel), updated after every
    step; evaluations score it beside the latest weights. None when ema_decay is 0. Resumed from
    the checkpoint's average when it has one."""
    if cfg.ema_decay == 0:
        return None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay))
    if ckpt is not None and ckpt.get("ema") is not None:
        try:
            ema.load_state_dict(ckpt["ema"])
        except (RuntimeError, TypeError, KeyError) as e:
            raise CheckpointError(f"{cfg.out}/{CHECKPOINT} is damaged: its weight average: "
                                  f"{first_line(e)}") from None
    return ema


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


def steps_per_epoch(cfg: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """With several ranks the text is cut into world_size * batch_size rows: fewer, shorter chunks."""
    return data.num_chunks(n_train, cfg.batch_size * world_size, cfg.seq_len)


def planned_steps(cfg: TrainConfig, n_train: int, world_size: int = 1) -> int:
    """The step at which --epochs ends the run (the time budget may end it sooner)."""
    return max(1, int(cfg.epochs * steps_per_epoch(cfg, n_train, world_size)))


def epoch_offset(cfg: TrainConfig, epoch: int) -> int:
    """A new random offset each epoch moves the chunk boundaries, so the model does not see the same
    windows every time. Seeded by epoch, so a resumed run rebuilds the same ones."""
    generator = torch.Generator().manual_seed(cfg.training_seed * 1000 + epoch)
    return int(torch.randint(0, cfg.seq_len, (1,), generator=generator))


def chunks_in_epoch(cfg: TrainConfig, n_train: int, epoch: int, world_size: int = 1) -> int:
    return data.num_chunks(n_train, cfg.batch_size * world_size, cfg.seq_len, epoch_offset(cfg, epoch))


def get_batch(train_ids, cfg: TrainConfig, epoch: int, chunk_index: int, device: torch.device,
              rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk `chunk_index` of this epoch's rows, loaded from the token file (a memmap): inputs and
    next-char targets. With several ranks the text is cut into world_size * B rows and rank r
    takes rows [r*B, (r+1)*B): together the ranks train on every row once. # (B, T), (B, T)"""
    rows = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
    return data.load_chunk(train_ids, cfg.batch_size * world_size, cfg.seq_len, epoch_offset(cfg, epoch),
                           chunk_index, device, rows)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   grad_clip: float | None = None, ema: AveragedModel | None = None) -> None:
    """Gradients of `loss`, clipped to `grad_clip` (None: not clipped), then one update, and the
    weight average's (if any) after it."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if ema is not None:
        ema.update_parameters(model)


def train_step(net: torch.nn.Module, model: CharRNN, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, carried, grad_clip: float | None = None, ema: AveragedModel | None = None):
    """The training step: the chunk x -> y (B, T) read from the carried state by `net` (the model, or
    its DDP wrapper) in the model's precision (the loss in fp32 either way), then optimizer_step.
    Returns the state after the chunk and the loss."""
    with autocast_for(model, "train"):
        _, state, loss = net(x, carried, targets=y)
    optimizer_step(model, optimizer, loss, grad_clip, ema)  # clips the all-reduced gradients
    return state, loss


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---- files: the output folder and the metrics -------------------------------------------------

METRICS = "metrics.jsonl"


def check_out_dir(out: Path, overwrite: bool = False) -> None:
    """Make sure `out` is a folder we can write to, before any work: a bad --out fails now, not
    after training. Files there that no charrnn run wrote are refused unless `overwrite`.
    ValueError says what is wrong."""
    try:
        foreign = [] if overwrite or not out.is_dir() else foreign_outputs(out)
        if foreign:
            raise ValueError(f"--out {out} already holds {', '.join(foreign)}, which no charrnn run wrote: "
                             f"choose another --out, or pass --overwrite to replace them")
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


OUTPUT_FILES = ("config.json", "model.safetensors", "README.md", corpus_profile.PROFILE_FILE,
                "loss.png", METRICS, CHECKPOINT, SNAPSHOTS)


def foreign_outputs(out: Path) -> list[str]:
    """The files a run would write over in `out` that no charrnn run wrote: all of them in a
    folder without a run's metrics.jsonl or checkpoint.pt, and a README.md that is not a charrnn
    model card (say, a project's own) anywhere."""
    present = [name for name in OUTPUT_FILES if (out / name).exists()]
    if not ((out / METRICS).is_file() or (out / CHECKPOINT).is_file()):
        return present
    return ["README.md"] if "README.md" in present and not is_charrnn_card(out / "README.md") else []


def is_charrnn_card(path: Path) -> bool:
    """A README.md whose YAML front matter says library_name: charrnn, as every card a run writes."""
    try:
        return (metadata_load(path) or {}).get("library_name") == "charrnn"
    except Exception:  # unreadable, or YAML that does not parse: not a card we wrote
        return False


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

    def __init__(self, path: Path, step: int, saved: bool = True, finishing: bool = False):
        self.path, self.step = path, step
        where = f"checkpoint saved to {path}" if saved else f"the last checkpoint in {path} is kept"
        when = f"while finishing the run (step {step})" if finishing else f"at step {step}"
        super().__init__(f"interrupted {when}; {where}")


class OutputError(ValueError):
    """The finished run's outputs could not be written; its checkpoint is kept for --resume."""


class StopRequest:
    """The first Ctrl-C only sets `requested`, so the loop stops between two steps with a
    consistent model, optimizer and carried state; a second one interrupts at once (not under
    torchrun, which forwards the terminal's Ctrl-C to each rank: there a rank's stop stops all)."""

    def __init__(self):
        self.requested = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        # Under torchrun, Ctrl-C reaches each rank twice (from the terminal, then forwarded by torchrun,
        # which kills the ranks itself 30 s later): both only ask for the stop.
        if self.requested and not distributed.launched_by_torchrun():
            raise KeyboardInterrupt
        self.requested = True
        if distributed.is_main():
            again = ("torchrun ends the processes in 30 s" if distributed.launched_by_torchrun()
                     else "Ctrl-C again to quit now")
            print(f"\nCtrl-C: stopping after this step and saving a checkpoint ({again})",
                  file=sys.stderr, flush=True)

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


CURVE_POINTS = 100  # training-loss points per run for the loss plot, however few evaluations it has


@dataclass
class Window:
    """Training loss and speed since the last evaluation (what a metrics row reports), and the
    training-loss points between evaluations: [step, elapsed_s, mean loss since the point before]."""
    loss_sum: float = 0.0
    steps: int = 0
    chars: int = 0
    started: float = field(default_factory=time.perf_counter)
    points: list[list] = field(default_factory=list)
    point_sum: float = 0.0
    point_steps: int = 0

    def add(self, loss: float, chars: int) -> None:
        self.loss_sum, self.steps, self.chars = self.loss_sum + loss, self.steps + 1, self.chars + chars
        self.point_sum, self.point_steps = self.point_sum + loss, self.point_steps + 1

    def mark(self, run: RunState) -> None:
        """A point of the training curve: the mean loss of the steps since the last one."""
        if self.point_steps:
            self.points.append([run.step, round(run.elapsed_s, 1),
                                round(self.point_sum / self.point_steps, 4)])
            self.point_sum, self.point_steps = 0.0, 0

    def mean_loss(self) -> float:
        return self.loss_sum / max(1, self.steps)

    def chars_per_s(self) -> float:
        return self.chars / max(1e-9, time.perf_counter() - self.started)


class ProgressBar:
    """tqdm over the whole run, in percent: training by steps or by time (whichever is further, as
    the lr schedule counts), then the last evaluation and the final score, which the budget keeps
    room for. Its total never changes (a total in steps, re-estimated from the pace, jumped from
    3,540 to 37 to 45); the step count is in the postfix."""

    def __init__(self, budget: Budget, total_steps: int, run: RunState):
        self.budget, self.total_steps = budget, total_steps
        self.bar = tqdm(total=100, unit="%", dynamic_ncols=True, disable=not distributed.is_main(),
                        bar_format="{l_bar}{bar}| [{elapsed}<{remaining}{postfix}]",
                        mininterval=1.0 if sys.stderr.isatty() else 60.0)
        self.bar.update(self.percent(run))

    def percent(self, run: RunState) -> float:
        trained = self.budget.progress(run.elapsed_s, run.step, self.total_steps)
        return 100 * min(1.0, trained) * self.budget.training_end_s / self.budget.total_s

    def update(self, run: RunState, window: Window, note: str | None = None) -> None:
        postfix = {"step": run.step, "loss": f"{window.mean_loss():.3f}"}
        if run.history:
            postfix.update(val=f"{run.history[-1]['val_loss']:.4f}", best=f"{run.best_val:.4f}")
        if note:
            postfix["now"] = note
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(max(0.0, self.percent(run) - self.bar.n))

    def note(self, text: str) -> None:
        self.bar.set_postfix_str(text)

    def done(self) -> None:
        """The run is over: the bar at 100%."""
        self.bar.update(self.bar.total - self.bar.n)

    def close(self) -> None:
        self.bar.close()


# ---- the loop ----------------------------------------------------------------------------------

def evaluate_and_save(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                      run: RunState, window: Window, val_ids: torch.Tensor, epochs: float, out: Path) -> None:
    """Score the validation split, keep the best weights, checkpoint, then append the metrics row
    (in that order: a kill during the save leaves no row that the checkpoint does not know).
    Rank 0 alone calls it; train_loss and chars_per_s are of all ranks together."""
    speed = window.chars_per_s()  # of training alone: measured before the evaluation
    val, kept = nats_per_char(model, val_ids, rows=cfg.eval_rows), model
    row = dict(step=run.step, epoch=round(epochs, 3), elapsed_s=round(run.elapsed_s, 1),
               train_loss=round(window.mean_loss(), 4), val_loss=None, val_chars=len(val_ids),
               lr=optimizer.param_groups[0]["lr"], chars_per_s=round(speed, 1),
               world_size=distributed.world_size(), train_points=window.points)
    # both scored: the run keeps whichever reads better, and shows what averaging gave
    if run.ema is not None:
        val_ema = nats_per_char(run.ema.module, val_ids, rows=cfg.eval_rows)
        row.update(val_loss_latest=round(val, 4), val_loss_ema=round(val_ema, 4))
        if val_ema < val:
            val, kept = val_ema, run.ema.module
    row["val_loss"] = round(val, 4)
    run.history.append(row)
    run.keep_if_best(val, kept)
    save_checkpoint(out / CHECKPOINT, cfg, vocab, model, optimizer, run)
    append_jsonl(out / METRICS, run.history[-1])


@contextmanager
def all_ranks_carried(run: RunState):
    """While rank 0 checkpoints: the carried state of every rank, joined as one process training on all
    rows would hold it, so that --resume (with any number of ranks) continues every row.
    A collective call: every rank enters it. # (L, B, H) -> (L, W*B, H)"""
    local = run.carried
    run.carried = distributed.gather_rows(local)
    try:
        yield
    finally:
        run.carried = local


def set_rng(cfg: TrainConfig, rank: int, step: int) -> None:
    """Set this rank's random numbers for the run from `step` on: ranks other than 0 draw dropout masks
    of their own; rank 0 keeps the RNG set by the training seed (or restored), as one process would."""
    if rank > 0:
        torch.manual_seed(cfg.training_seed + 1_000_003 * rank + step)


def advance(run: RunState, cfg: TrainConfig, n_train: int, clock: float, world_size: int = 1) -> float:
    """Count the step just taken: step, chunk, epoch and training time. Returns the new clock."""
    run.step, run.chunk_index = run.step + 1, run.chunk_index + 1
    if run.chunk_index == chunks_in_epoch(cfg, n_train, run.epoch, world_size):
        run.epoch, run.chunk_index = run.epoch + 1, 0
    now = time.perf_counter()
    run.elapsed_s += now - clock
    return now


def evaluate_now(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                 run: RunState,
                 window: Window, val_ids: torch.Tensor, out: Path, budget: Budget, epochs: float) -> bool:
    """evaluate_and_save by rank 0 (every rank joins the collective calls), timed: the budget expects
    the next evaluation to take as long. Returns whether to stop early (rank 0's decision)."""
    device, started = next(model.parameters()).device, time.perf_counter()
    window.mark(run)  # the training curve up to here belongs to this row
    with all_ranks_carried(run):
        if distributed.is_main():
            evaluate_and_save(cfg, vocab, model, optimizer, run, window, val_ids, epochs, out)
    budget.measured_eval(distributed.broadcast_number(time.perf_counter() - started, device))
    return distributed.broadcast_flag(run.evals_without_gain >= cfg.patience, device)


def train_loop(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
               run: RunState, train_ids: torch.Tensor, val_ids: torch.Tensor, out: Path, budget: Budget,
               bar: ProgressBar) -> str:
    """Step until the budget, an early stop or Ctrl-C; returns why it stopped. Under torchrun every
    rank runs it in lockstep: DDP averages the gradients, rank 0's clock and early-stop decision
    end every rank at the same step, and rank 0 alone evaluates and checkpoints."""
    if run.evals_without_gain >= cfg.patience:  # resumed after an early stop: only the finishing is left
        return "early stop"
    rank, world = distributed.rank(), distributed.world_size()
    total_steps = planned_steps(cfg, len(train_ids), world)
    epoch_steps = steps_per_epoch(cfg, len(train_ids), world)

    def progress() -> float:
        return budget.progress(run.elapsed_s, run.step, total_steps)

    stop, window, point = StopRequest(), Window(), int(CURVE_POINTS * progress())
    keeper = Keeper(cfg, out, epoch_steps, run.step, run.epoch, progress()) if distributed.is_main() else None
    model.train()
    net = distributed.wrap(model)  # DDP for the forward/backward; the carried state stays per rank
    clock = time.perf_counter()
    try:
        while progress() < 1:
            x, loss = step_on_next_batch(cfg, net, model, optimizer, run, train_ids, progress(), rank, world)
            clock = advance(run, cfg, len(train_ids), clock, world)
            run.elapsed_s, mean_loss, stop_now = distributed.sync_step(run.elapsed_s, loss.item(),
                                                                       stop.requested, loss.device)
            window.add(mean_loss, x.numel() * world)
            if int(CURVE_POINTS * progress()) > point:
                point = int(CURVE_POINTS * progress())
                window.mark(run)
            bar.update(run, window)
            clock += take_snapshots(keeper, model, run, progress(), val_ids, window, budget)
            due = run.step % cfg.eval_every == 0
            # synced: the same on every rank
            last = progress() >= 1 or (due and budget.last_eval_now(run.elapsed_s))
            if due or last:
                bar.update(run, window, "evaluating")
                early = evaluate_now(cfg, vocab, model, optimizer, run, window, val_ids, out, budget,
                                     run.step / epoch_steps)
                window, now = Window(), time.perf_counter()
                run.elapsed_s, clock = run.elapsed_s + now - clock, now  # evaluations are part of the run
                if early or last:
                    return "early stop" if early else "budget"
            if stop_now:
                checkpoint_and_stop(cfg, vocab, model, optimizer, run, out)
        return "budget"
    except KeyboardInterrupt:  # a second Ctrl-C: the step may be half done, so keep the last checkpoint
        raise Interrupted(out / CHECKPOINT, run.step, saved=False) from None
    finally:
        stop.restore()


def step_on_next_batch(cfg: TrainConfig, net: torch.nn.Module, model: CharRNN,
                       optimizer: torch.optim.Optimizer, run: RunState, train_ids: torch.Tensor,
                       progress: float, rank: int, world: int):
    """One training step on this rank's next chunk, from the carried state; returns the chunk x
    (B, T) and the loss."""
    device = next(model.parameters()).device
    # (B, T), (B, T)
    x, y = get_batch(train_ids, cfg, run.epoch, run.chunk_index, device, rank, world)
    if run.chunk_index == 0:
        run.carried = None  # each epoch starts its rows from their start
    set_lr(optimizer, lr_at(cfg, progress))
    state, loss = train_step(net, model, optimizer, x, y, run.carried, cfg.grad_clip, run.ema)
    run.carried = detach_state(state)  # committed only once the step is complete
    return x, loss


def take_snapshots(keeper: Keeper | None, model: CharRNN, run: RunState, progress: float,
                   val_ids: torch.Tensor, window: Window, budget: Budget) -> float:
    """Rank 0 keeps the snapshots --snapshots asks for (keeper is None on the other ranks). They are
    off the clock and out of the window's speed, but part of the budget: returns the seconds spent."""
    if keeper is None:
        return 0.0
    spent = keeper.take_due(model, run, progress, val_ids)
    window.started += spent
    budget.off_clock_s += spent
    return spent


def checkpoint_and_stop(cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                        run: RunState, out: Path) -> None:
    """Ctrl-C between steps: rank 0 saves the checkpoint, then every rank stops with Interrupted."""
    with all_ranks_carried(run):
        if distributed.is_main():
            save_checkpoint(out / CHECKPOINT, cfg, vocab, model, optimizer, run)
    distributed.barrier()  # torchrun stops all ranks when one exits with an error: save first
    raise Interrupted(out / CHECKPOINT, run.step)


def train(cfg: TrainConfig, resume: bool = False, device: torch.device | None = None, log=print,
          given: set[str] = frozenset(), write_outputs=None, overwrite: bool = False) -> TrainResult | None:
    """Train, keep the best model by validation loss, and return it with how it got there.

    Under torchrun (distributed.setup called first) every rank calls it; rank 0 alone logs, writes
    the metrics and checkpoints and gets the result, the other ranks get None.

    With resume=True, continue from {out}/checkpoint.pt: model, optimizer, schedule position, data
    position, carried state and RNG state are restored, so the rest of the run is the one an
    uninterrupted run would have done (up to the time budget already spent). `given` names the
    settings the user set: of those, a resumed run applies RESUMABLE and reports the others ignored.
    `write_outputs(result)` writes the weights, plot and card (train_cli's) before the run is
    marked finished (end_run). Files in cfg.out that no charrnn run wrote are kept, and the run
    refused, unless `overwrite`. --max-minutes covers all of it but write_outputs (budget.py)."""
    started, device, world = time.perf_counter(), device or torch.device("cpu"), distributed.world_size()
    log = log if distributed.is_main() else (lambda *args, **kwargs: None)
    out = Path(cfg.out)
    ckpt = load_checkpoint(out / CHECKPOINT) if resume else None
    if ckpt is not None:
        cfg = resumed_config(ckpt, cfg, set(given), out / CHECKPOINT, log)
    cfg = cfg.validate()
    check_out_dir(out, overwrite)  # now, not after training
    corpus = open_corpus_rank0_first(cfg, log)
    # train_ids: a memmap of the token file; val_ids: the bounded start of validation, in memory
    vocab, train_ids, val_ids = corpus.vocab, corpus.train, corpus.eval_ids()

    torch.manual_seed(cfg.training_seed)
    model = build_model(cfg, vocab, device)
    optimizer = build_optimizer(cfg, model)
    run = start_run(cfg, ckpt, vocab, model, optimizer, out, len(train_ids), log)
    use(model, cfg.precision)  # the steps and the evaluations
    log(f"{model.num_params():,} parameters, corpus {corpus.info.describe()}, "
        f"{steps_per_epoch(cfg, len(train_ids), world)} steps per epoch, {cfg.recipe} recipe, "
        f"device {device}, {describe(cfg.precision, device)}"
        + (f", {world} processes x {cfg.batch_size} rows" if world > 1 else ""))

    profile = describe_corpus(cfg, corpus, log) if distributed.is_main() else None  # before training: quick
    budget = plan_budget(cfg, model, run, val_ids, device)
    budget.off_clock_s = time.perf_counter() - started  # part of the run, but not of the lr schedule's clock
    log(budget.describe())
    bar = ProgressBar(budget, planned_steps(cfg, len(train_ids), world), run)
    try:
        stop_reason = train_loop(cfg, vocab, model, optimizer, run, train_ids, val_ids, out, budget, bar)
        if not distributed.is_main():
            return None
        return end_run(cfg, model, run, stop_reason, corpus.info, val_ids, out, log, write_outputs,
                       profile, budget, bar)
    finally:
        bar.close()


def start_run(cfg: TrainConfig, ckpt: dict | None, vocab: Vocab, model: CharRNN,
              optimizer: torch.optim.Optimizer, out: Path, n_train: int, log) -> RunState:
    """The run's state: fresh, or restored from the checkpoint (every check passes before any file
    is written); the weight average on rank 0, this rank's random numbers and carried rows, and
    metrics.jsonl as the run knows it."""
    world = distributed.world_size()
    run = RunState(world_size=world)
    if ckpt is not None:
        run = restore_run(ckpt, cfg, vocab, model, optimizer, out, n_train, log)
    # rank 0 alone scores and saves it
    run.ema = build_ema(cfg, model, ckpt) if distributed.is_main() else None
    set_rng(cfg, distributed.rank(), run.step)
    run.carried = distributed.my_rows(run.carried, cfg.batch_size)  # the checkpoint holds every rank's rows
    if distributed.is_main():
        write_metrics(out / METRICS, run.history)  # a fresh file, or the rows the checkpoint knows
    return run


def plan_budget(cfg: TrainConfig, model: CharRNN, run: RunState, val_ids: torch.Tensor, device: torch.device
                ) -> Budget:
    """The time budget, with the final score and one evaluation timed by rank 0 on a slice of the
    validation text (every rank gets rank 0's numbers, so that all stop at the same step)."""
    if distributed.is_main():
        budget = estimate(model, val_ids, cfg.max_minutes * 60, cfg.eval_rows, 1 + (run.ema is not None))
    else:
        budget = Budget(cfg.max_minutes * 60)
    budget.final_s = distributed.broadcast_number(budget.final_s, device)
    budget.eval_s = distributed.broadcast_number(budget.eval_s, device)
    return budget


def restore_run(ckpt: dict, cfg: TrainConfig, vocab: Vocab, model: CharRNN, optimizer: torch.optim.Optimizer,
                out: Path, n_train: int, log) -> RunState:
    """The checkpoint's model, optimizer, RNG and run state, each checked, its data position too."""
    world = distributed.world_size()
    run = restore_checkpoint(ckpt, vocab, model, optimizer, cfg, out / CHECKPOINT, world)
    check_position(run, chunks_in_epoch(cfg, n_train, run.epoch, world), out / CHECKPOINT)
    log(f"resuming from step {run.step} (epoch {run.epoch}, {run.elapsed_s / 60:.1f} min done)")
    if ckpt["progress"].get("world_size", 1) != world:
        log(f"the checkpoint was written by {ckpt['progress'].get('world_size', 1)} processes, this run has "
            f"{world}: the rows are cut anew, so training continues at the start of epoch {run.epoch}")
    return run


def end_run(cfg: TrainConfig, model: CharRNN, run: RunState, stop_reason: str, corpus: data.CorpusInfo,
            val_ids: torch.Tensor, out: Path, log, write_outputs=None,
            profile: corpus_profile.CorpusProfile | None = None, budget: Budget | None = None,
            bar: ProgressBar | None = None) -> TrainResult:
    """The end, in this order: the best weights' exact score, `write_outputs(result)`, and the
    checkpoint marked finished last. A stop or a write error before the mark keeps the checkpoint,
    so --resume does the end again."""
    try:
        result = finish(cfg, model, run, stop_reason, corpus, val_ids, log, profile, budget, bar)
        if write_outputs is not None:
            write_outputs(result)
        mark_finished(out / CHECKPOINT, cfg, run)
    except KeyboardInterrupt:  # the checkpoint holds the whole run: --resume does the finishing again
        raise Interrupted(out / CHECKPOINT, run.step, finishing=True) from None
    except (OSError, RuntimeError) as e:  # a full disk while writing the weights, plot, card or marker
        raise OutputError(f"could not write the outputs into {out}: "
                          f"{getattr(e, 'strerror', None) or first_line(e)}; the run is kept: make room, "
                          "then finish it with --resume") from None
    return result


def finish(cfg: TrainConfig, model: CharRNN, run: RunState, stop_reason: str, corpus: data.CorpusInfo,
           val_ids: torch.Tensor, log, profile: corpus_profile.CorpusProfile | None = None,
           budget: Budget | None = None, bar: ProgressBar | None = None) -> TrainResult:
    """Back to the best weights and their exact score (the checkpoint stays as it is); `profile`
    (the corpus as pages tell it) gets that score and what it read. The result's minutes are the
    whole run's: the budget's time off the clock, the clock, and this final score."""
    if run.best_weights is None:
        raise ValueError("the validation loss was never a finite number: training diverged; try a lower --lr")
    started = time.perf_counter()
    if bar is not None:
        bar.note(f"final score of {len(val_ids):,} validation chars")
    model.load_state_dict(run.best_weights)
    with threads.using("read", model.rnn.num_layers):  # as charrnn.evaluate reads: a thread per layer
        val = nats_per_char(model, val_ids, rows=1)  # the exact score of those chars, as the CLI does
    minutes = ((budget.off_clock_s if budget else 0.0) + run.elapsed_s + time.perf_counter() - started) / 60
    if bar is not None:
        bar.done()
    log(f"stopped ({stop_reason}) after {run.step} steps, {minutes:.1f} min in all; "
        f"best val {val:.4f} nats/char ({val / math.log(2):.4f} bits) at step {run.best_step}")
    if profile is not None:
        profile = corpus_profile.with_validation(profile, val, len(val_ids), corpus.val_chars, cfg.val_frac)
    return TrainResult(model=model.cpu(), config=cfg, val_loss=val, best_step=run.best_step, steps=run.step,
                       minutes=minutes, stop_reason=stop_reason, history=run.history, corpus=corpus,
                       profile=profile, machine=machine_name(next(model.parameters()).device))
