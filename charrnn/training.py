"""The training loop: stateful truncated BPTT over contiguous streams, AdamW, warmup + cosine,
clipping, evaluation on the validation split (its start when large), best-model keeping, early stop, atomic
checkpoints with optimizer and RNG state, and a clean stop on Ctrl-C.
"""
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import data
from .evaluate import nats_per_char
from .model import CharRNN, detach_state
from .sources import open_source
from .text import Vocab


# The best recipe depends on the budget (bench/RESULTS.md, accent-stripped text):
# - short: one wide GRU layer over 64 streams read in 64-char chunks learns the most per CPU
#   second: 1.226 nats/char after 10 minutes (128-char chunks: 1.238; the long recipe: 1.311).
#   Half-length chunks give twice the updates for the same chars, which is what the first minutes
#   need (1.48 after one minute, against 1.60); dropout 0.2 then holds off the overfitting they
#   bring on sooner (without it: 1.260, flat from minute 4).
# - long: a 2-layer LSTM with dropout over 16 streams learns slower but keeps improving:
#   1.200 after 15 minutes, 1.194 after 27.
# Fields left at None take the recipe of the run's budget; anything set explicitly wins.
SHORT_BUDGET = 10.0  # minutes; at or below it, the short recipe. Given 15 minutes it reached
# 1.226, no better than in 10, and the long recipe 1.200, so they cross between 10 and 15; 10 is
# the largest budget at which the short one was measured ahead
RECIPES = {
    "short": dict(cell="gru", num_layers=1, dropout=0.2, batch_size=64, seq_len=64, lr=2e-3, epochs=60.0),
    "long": dict(cell="lstm", num_layers=2, dropout=0.25, batch_size=16, seq_len=128, lr=3e-3, epochs=14.0),
}


@dataclass
class TrainConfig:
    data: str | None = None  # a file or a folder of .txt files; None: the default corpus (cache, ../shared/data, download)
    dataset: str | None = None  # or a Hugging Face dataset: a folder saved with save_to_disk, or a Hub id
    dataset_config: str | None = None
    text_column: str = "text"
    strip_accents: bool = False  # True reproduces the tutorials' accent-free text
    # model (None: from RECIPES)
    cell: str | None = None
    embed_dim: int = 128
    hidden_size: int = 512
    num_layers: int | None = None
    dropout: float | None = None
    # optimization
    batch_size: int | None = None  # contiguous streams
    seq_len: int | None = None  # chars per chunk; gradients are truncated at chunk boundaries
    lr: float | None = None
    weight_decay: float = 0.01
    warmup: float = 0.03  # fraction of the run
    min_lr: float = 0.05  # final lr as a fraction of lr
    grad_clip: float = 1.0
    # budget: the run ends at whichever comes first; the lr schedule follows the same clock
    epochs: float | None = None
    max_minutes: float = 27.0
    # evaluation
    val_frac: float = 0.2
    eval_every: int = 600  # steps
    eval_streams: int = 16  # see evaluate.nats_per_char; the final score uses 1
    max_eval_chars: int = 1_000_000  # evaluations read at most this many validation chars (the default corpus has 204k)
    patience: int = 5  # evaluations without improvement before an early stop
    seed: int = 1337
    device: str = "auto"
    out: str = "weights"

    def recipe(self) -> str:
        return "short" if self.max_minutes <= SHORT_BUDGET else "long"

    def resolve(self) -> "TrainConfig":
        """A copy with the fields left at None filled from the recipe for this budget."""
        return replace(self, **{k: v for k, v in RECIPES[self.recipe()].items() if getattr(self, k) is None})

    def validate(self) -> "TrainConfig":
        """The resolved config, or a ValueError that names the bad setting."""
        if not isinstance(self.max_minutes, (int, float)) or not self.max_minutes > 0:
            raise ValueError(f"max-minutes must be positive, not {self.max_minutes!r}")
        self = self.resolve()
        positive = ["embed_dim", "hidden_size", "num_layers", "batch_size", "seq_len", "eval_every",
                    "eval_streams", "patience"]
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive whole number, not {v!r}")
        if self.hidden_size > 8192 or self.embed_dim > 8192 or self.num_layers > 16:
            raise ValueError("sizes this large will not train here: hidden/embed at most 8192, at most 16 layers")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be gru or lstm, not {self.cell!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if not (self.lr > 0 and self.epochs > 0 and self.grad_clip > 0):
            raise ValueError("lr, epochs and grad-clip must be positive")
        if not (0 <= self.warmup < 1 and 0 <= self.min_lr <= 1 and 0 < self.val_frac < 1):
            raise ValueError("warmup must be in [0, 1), min-lr in [0, 1], val-frac in (0, 1)")
        return self


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warmup, then cosine from lr down to min_lr * lr, over progress in [0, 1]."""
    if progress < cfg.warmup:
        return cfg.lr * progress / cfg.warmup
    t = min(1.0, (progress - cfg.warmup) / (1 - cfg.warmup))
    return cfg.lr * (cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t)))


def open_corpus(cfg: TrainConfig, log=print) -> data.Corpus:
    """The config's corpus as a token file on disk (prepared once, then found by content hash),
    split by position, with the bounded slice of validation that evaluations read."""
    cfg = cfg.resolve()
    source = open_source(cfg.data, cfg.dataset, cfg.dataset_config, cfg.text_column)
    corpus = data.load(source, cfg.strip_accents, cfg.val_frac, cfg.max_eval_chars, log)
    if len(corpus.train) // cfg.batch_size < cfg.seq_len + 1:
        raise data.DataError(f"{len(corpus.train)} training chars are too few for {cfg.batch_size} streams "
                             f"of {cfg.seq_len}-char chunks; use a smaller --batch-size or --seq-len")
    return corpus


def load_corpus(cfg: TrainConfig, log=print) -> tuple[Vocab, torch.Tensor, torch.Tensor]:
    """The vocabulary and the whole train and validation splits in memory, for small corpora
    (the bench's tutorial recipes index them freely). # (N_train,), (N_val,)"""
    corpus = open_corpus(cfg, log)
    return corpus.vocab, data.as_tensor(corpus.train), data.as_tensor(corpus.val)


def atomic_save(obj, path: Path) -> None:
    """Write to a temp file and rename over the target, so a crash or Ctrl-C never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


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


def train(cfg: TrainConfig, resume: bool = False, device: torch.device | None = None, log=print) -> dict:
    """Train, keep the best model by validation loss, and return a summary (the model included).

    With resume=True, continue from {out}/checkpoint.pt: model, optimizer, schedule position,
    data position, carried state and RNG state are restored, so the rest of the run is the one
    an uninterrupted run would have done (up to the time budget already spent)."""
    out = Path(cfg.out)
    ckpt_path = out / "checkpoint.pt"
    ckpt = None
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("finished"):
            raise FileNotFoundError(f"nothing to resume: the run in {out} already finished")
        cfg = TrainConfig(**{**ckpt["config"], "out": cfg.out, "device": cfg.device})
    cfg = cfg.validate()
    device = device or torch.device("cpu")
    corpus = open_corpus(cfg, log)
    # train_ids: a memmap of the token file; val_ids: the bounded start of validation, in memory
    vocab, train_ids, val_ids = corpus.vocab, corpus.train, corpus.eval_ids()
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.jsonl"

    torch.manual_seed(cfg.seed)
    model = CharRNN(vocab.chars, cfg.strip_accents, cfg.cell, cfg.embed_dim, cfg.hidden_size,
                    cfg.num_layers, cfg.dropout).to(device)
    # Decay matrices only: biases and the embedding table are not what overfits.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed")]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))

    steps_per_epoch = data.num_chunks(len(train_ids), cfg.batch_size, cfg.seq_len)
    total_steps = max(1, int(cfg.epochs * steps_per_epoch))
    budget_s = cfg.max_minutes * 60
    s = dict(step=0, epoch=0, chunk=0, elapsed=0.0, best_val=float("inf"), best_step=0, bad_evals=0,
             history=[])  # everything a resumed run needs besides model/optimizer/RNG
    best_state, state = None, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        s.update(ckpt["progress"])
        best_state = ckpt["best_model"]
        state = ckpt["rnn_state"]
        state = tuple(x.to(device) for x in state) if isinstance(state, (tuple, list)) else (
            state.to(device) if state is not None else None)
        log(f"resuming from step {s['step']} (epoch {s['epoch']}, {s['elapsed'] / 60:.1f} min done)")
    else:
        metrics_path.unlink(missing_ok=True)

    def save_checkpoint():
        atomic_save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "rng": torch.get_rng_state(), "progress": dict(s), "best_model": best_state,
                     "rnn_state": state, "finished": False}, ckpt_path)

    def progress() -> float:
        return max(s["step"] / total_steps, s["elapsed"] / budget_s)

    log(f"{model.num_params():,} parameters, corpus {corpus.info.describe()}, "
        f"{steps_per_epoch} steps per epoch, device {device}")
    stop = StopRequest()  # Ctrl-C finishes the current step, then saves and stops
    bar = tqdm(total=total_steps, initial=int(progress() * total_steps), unit="step",
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 60.0)
    model.train()
    loss_sum, loss_n, chars = 0.0, 0, 0
    t_last = t_window = time.perf_counter()
    stop_reason = "budget"
    try:
        while progress() < 1:
            # A new random offset each epoch moves the chunk boundaries, so the model does not see
            # the same windows every time. Seeded by epoch: a resumed run rebuilds them.
            g = torch.Generator().manual_seed(cfg.seed * 1000 + s["epoch"])
            offset = int(torch.randint(0, cfg.seq_len, (1,), generator=g))
            if s["chunk"] == 0:
                state = None
            # Each step reads its (B, T+1) window from the memmap; a resume starts at its chunk.
            for i, (x, y) in data.read_chunks(train_ids, cfg.batch_size, cfg.seq_len, offset, s["chunk"], device):
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, progress())
                _, new_state, loss = model(x, state, targets=y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                state = detach_state(new_state)  # committed only once the step is complete

                now = time.perf_counter()
                s["elapsed"] += now - t_last
                t_last = now
                s["step"] += 1
                s["chunk"] = i + 1
                loss_sum, loss_n, chars = loss_sum + loss.item(), loss_n + 1, chars + x.numel()
                bar.update(int(progress() * total_steps) - bar.n)

                last = progress() >= 1
                if s["step"] % cfg.eval_every == 0 or last:
                    t_eval = time.perf_counter()
                    val = nats_per_char(model, val_ids, streams=cfg.eval_streams)
                    row = dict(step=s["step"], epoch=round(s["epoch"] + i / steps_per_epoch, 3),
                               elapsed_s=round(s["elapsed"], 1), train_loss=round(loss_sum / loss_n, 4),
                               val_loss=round(val, 4), val_chars=len(val_ids), lr=opt.param_groups[0]["lr"],
                               chars_per_s=round(chars / max(1e-9, t_eval - t_window), 1))
                    append_jsonl(metrics_path, row)
                    s["history"].append(row)
                    if val < s["best_val"]:
                        s.update(best_val=val, best_step=s["step"], bad_evals=0)
                        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    else:
                        s["bad_evals"] += 1
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{val:.4f}",
                                    best=f"{s['best_val']:.4f}", cps=f"{row['chars_per_s']:.0f}")
                    save_checkpoint()
                    loss_sum, loss_n, chars = 0.0, 0, 0
                    t_last = t_window = time.perf_counter()  # evaluation time is not training time
                    if s["bad_evals"] >= cfg.patience:
                        stop_reason = "early stop"
                        break
                if stop.requested:
                    save_checkpoint()
                    raise Interrupted(ckpt_path, s["step"])
                if last:
                    break
            else:
                s["epoch"], s["chunk"] = s["epoch"] + 1, 0
                continue
            break
    except KeyboardInterrupt:  # a second Ctrl-C: the step may be half done, so keep the last checkpoint
        raise Interrupted(ckpt_path, s["step"], saved=False) from None
    finally:
        bar.close()
        stop.restore()

    model.load_state_dict(best_state)
    val = nats_per_char(model, val_ids, streams=1)  # the exact score of those chars, as charrnn.evaluate computes it
    atomic_save({"config": asdict(cfg), "finished": True, "progress": dict(s)}, ckpt_path)
    log(f"stopped ({stop_reason}) after {s['step']} steps, {s['elapsed'] / 60:.1f} min; "
        f"best val {val:.4f} nats/char ({val / math.log(2):.4f} bits) at step {s['best_step']}")
    return dict(model=model.cpu(), config=cfg, val_loss=val, best_step=s["best_step"], steps=s["step"],
                minutes=s["elapsed"] / 60, stop_reason=stop_reason, history=s["history"],
                train_chars=corpus.info.train_chars, val_chars=corpus.info.val_chars, eval_chars=len(val_ids),
                corpus=corpus.info)

