"""Score a model on a text: the log-probability it gives each char, read in order, state carried.

Static scoring reads the text with the weights as trained. Adaptive scoring (dynamic evaluation,
Krause et al. 2018) reads it in chunks: each chunk is scored first, then the model takes one
Adam step on that chunk's loss (and, with a decay, is pulled back toward the trained weights), so
it learns the names and turns of phrase of the text it is reading. It works on a copy: the
caller's model and the weights on disk never change.

    python -m charrnn.evaluate --split val [--adapt [--adapt-learn top]] [--mix] [--max-chars N]
prints one JSON line: {"nats_per_char", "bits_per_char", "chars", "unknown_chars", "adaptive", ...}.
"""
import argparse
import copy
import json
import math
import queue
import re
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data
from .device import resolve_device
from .mixing import CountMixer, Mix
from .model import CharRNN, detach_state
from .precision import PRECISIONS, autocast_for, describe, use
from .threads import configure
from .weights import WeightsError

WORD = re.compile(r"[^\W\d_]+")  # runs of letters, accented ones included
PROGRESS_FROM = 100_000  # the CLI shows a progress bar from this many chars (static reads ~8,000 chars/s)


# Adapt.learn, and what each adapts: fewer weights, less to backpropagate and update per chunk.
LEARNABLE = {"all": "every weight adapts",
             "top": "the output layer and the last RNN layer adapt, the layers below read the text once, "
                    "frozen",
             "head": "only the output layer adapts, the network below reads the text once, frozen"}


@dataclass(frozen=True)
class Adapt:
    """Dynamic evaluation: after scoring each `chunk` chars, one Adam step at `lr` on their loss,
    then every weight moves `decay` of the way back toward its trained value."""
    lr: float = 5e-4  # chosen for learn="top" on the first 20,000 validation chars: see bench/RESULTS.md
    decay: float = 0.0  # 0.003 gained 0.001 on the first 15,000 validation chars, lost 0.002 over 200,000
    chunk: int = 96  # against 64: 1.2x the speed for 0.0009 nats/char (bench/RESULTS.md, "Reading faster")
    # also mix the network with a count model of the prior text and the text read (mixing.py)
    mix: Mix | None = None
    # The weights that adapt: top (the head and the last RNN layer: ~1.4x faster than all, for a
    # few thousandths of a nat), all, or head (the output layer).
    learn: str = "top"

    def __post_init__(self):
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the adaptation learning rate must be a positive number, not {self.lr}")
        if not (math.isfinite(self.decay) and 0 <= self.decay < 1):
            raise ValueError(f"the decay toward the trained weights must be in [0, 1), not {self.decay}")
        if not (isinstance(self.chunk, int) and self.chunk >= 1):
            raise ValueError("the adaptation chunk must be a positive whole number of chars, not "
                             f"{self.chunk}")
        if self.learn not in LEARNABLE:
            raise ValueError(f"the weights to adapt must be one of {', '.join(LEARNABLE)}, "
                             f"not {self.learn!r}")
        if self.mix is not None and not isinstance(self.mix, Mix):
            raise ValueError(f"mix must be charrnn.mixing.Mix settings or None, not {self.mix!r}")


@dataclass
class Score:
    """How well a model read a text: logprobs[i] is the natural log-probability it gave char i+1
    of the text having read chars 0..i (the first char has no prediction)."""
    logprobs: torch.Tensor  # (N-1,) float64 on the CPU
    adapt: Adapt | None = None
    prior_chars: int = 0  # chars of prior text the count model started from (adapt.mix only)
    adapted: CharRNN | None = field(default=None, repr=False)  # the copy as it ended reading (keep_adapted)

    @property
    def chars(self) -> int:
        """Chars read, the first included (as the CLI has always counted them)."""
        return len(self.logprobs) + 1

    @property
    def total_nats(self) -> float:
        return -float(self.logprobs.sum())

    @property
    def nats_per_char(self) -> float:
        return self.total_nats / max(1, len(self.logprobs))

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    def summary(self, unknown_chars: int = 0) -> dict:
        """The CLI's JSON object (the app's /score returns the same keys)."""
        out = {"nats_per_char": round(self.nats_per_char, 5), "bits_per_char": round(self.bits_per_char, 5),
               "chars": self.chars, "unknown_chars": unknown_chars, "adaptive": self.adapt is not None}
        if self.adapt is not None:
            settings = asdict(self.adapt)
            mix = settings.pop("mix")
            out["adapt"] = {"method": "adam+decay" if mix is None else "adam+decay+counts", **settings}
            if mix is not None:
                out["adapt"]["mix"] = {**mix, "orders": list(mix["orders"]), "prior_chars": self.prior_chars}
        return out


class _Ticking:
    """A progress bar that also tells `tick(done, total)` after each piece read (see charrnn.reading)."""

    def __init__(self, bar, total: int, tick: Callable[[int, int], None] | None):
        self.bar, self.total, self.tick, self.done = bar, total, tick, 0  # (a disabled tqdm counts nothing)

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        if self.tick is not None:
            self.tick(self.done, self.total)


def score(model: CharRNN, ids: torch.Tensor, adapt: Adapt | None = None, progress: bool = False,
          prior: torch.Tensor | None = None, keep_adapted: bool = False,
          tick: Callable[[int, int], None] | None = None) -> Score:
    """Score `ids` (1-D token ids, at least 2) statically, or adaptively with `adapt` settings.
    With `adapt.mix`, the count model starts from the counts of `prior` (1-D token ids, e.g. the
    training split; read as if just before `ids`) and learns `ids` as they are scored. With
    keep_adapted, Score.adapted is the adaptive reader's copy of the model as it ended the text
    (to write in its style: charrnn/style.py); `model` itself never changes.
    `tick(done, total)` is called after each piece (an exception it raises stops the reading)."""
    if ids.dim() != 1 or len(ids) < 2:
        raise ValueError("need a 1-D sequence of at least 2 token ids to score")
    prior = torch.zeros(0, dtype=torch.long) if prior is None or adapt is None or adapt.mix is None else prior
    bar = tqdm(total=len(ids) - 1, unit="char", unit_scale=True, disable=not progress, leave=False,
               mininterval=1, desc="adaptive" if adapt else "static", file=sys.stderr)
    adapted = None
    with bar:
        bar = _Ticking(bar, len(ids) - 1, tick)
        if adapt is None:
            logprobs = _static(model, ids, bar)
        else:
            logprobs, adapted = _adaptive(model, ids, adapt, bar, prior)
    return Score(logprobs.double().cpu(), adapt, len(prior), adapted if keep_adapted else None)


@dataclass
class Reading:
    """A text as the model read it: `text` normalized as the model normalizes it, and for each of its
    chars the log-probability the model gave it (None for unknown chars, which are skipped, and for
    the first known char, which has no prediction)."""
    text: str
    logprobs: list[float | None]
    score: Score
    unknown: Counter

    def surprising_words(self, n: int = 10) -> list[tuple[str, float]]:
        """The n words that cost the model the most bits in all (each word once, its costliest time)."""
        worst: dict[str, float] = {}
        for m in WORD.finditer(self.text):
            lps = self.logprobs[m.start(): m.end()]
            if all(lp is not None for lp in lps):
                bits = -sum(lps) / math.log(2)
                worst[m.group()] = max(bits, worst.get(m.group(), 0.0))
        return sorted(worst.items(), key=lambda kv: -kv[1])[:n]


def read(model: CharRNN, text: str, adapt: Adapt | None = None, keep_adapted: bool = False,
         tick: Callable[[int, int], None] | None = None) -> Reading:
    """Score a text the way a user pastes it: normalized, unknown chars skipped and counted
    (keep_adapted: see score). `tick(done, total)` is called after each piece, as score() does."""
    text = model.vocab.normalize(text)
    unknown = model.vocab.unknown(text)
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    if len(ids) < 2:
        raise ValueError("the text needs at least 2 characters the model knows")
    result = score(model, ids, adapt, keep_adapted=keep_adapted, tick=tick)
    scored = iter([None] + result.logprobs.tolist())
    return Reading(text, [next(scored) if c in model.vocab.stoi else None for c in text], result, unknown)


def _target_logprobs(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1, T, V) logits and (1, T) targets -> (T,) log-probability of each target, in fp32."""
    return F.log_softmax(logits[0].float(), dim=-1).gather(1, y[0, :, None])[:, 0]


@torch.inference_mode()
def _static(model: CharRNN, ids: torch.Tensor, bar, block: int = 512) -> torch.Tensor:
    """Read the text one RNN layer per thread, as a pipeline over blocks of chars: layer 2 reads
    block k while layer 1 reads block k+1, so a 2-layer model reads ~1.3x faster on 2 cores, with
    the same numbers as one layer after the other (the state is carried from block to block)."""
    device = next(model.parameters()).device
    x_all, y_all = ids[:-1].to(device)[None], ids[1:].to(device)[None]  # (1, N-1)
    stop = threading.Event()  # set when the caller stops early: the layers then end at the next block
    blocks = (model.embed(x_all[:, i: i + block]) for i in range(0, x_all.size(1), block)
              if not stop.is_set())  # (1, t, E) each
    boxes, errors = [queue.Queue(maxsize=4) for _ in range(model.rnn.num_layers)], []
    threads = [threading.Thread(target=_layer_stage, name=f"charrnn-layer-{k + 1}", daemon=True,
                                args=(_in_precision(model.rnn_layers(k, k + 1), model),
                                      blocks if k == 0 else boxes[k - 1], box, errors))
               for k, box in enumerate(boxes)]
    for t in threads:
        t.start()
    out, i, h = [], 0, ()
    try:
        while (h := boxes[-1].get()) is not None:  # (1, t, H) the top layer's output
            out.append(_target_logprobs(model.head(h.float()), y_all[:, i: i + h.size(1)]))  # head in fp32
            i += h.size(1)
            bar.update(h.size(1))
    finally:  # every layer's thread ends before this returns: one still in torch when Python exits aborts it
        stop.set()
        while h is not None:  # stopped early (the head or a tick raised): drain the layers
            h = boxes[-1].get()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return torch.cat(out)


def _in_precision(layer: nn.Module, model: CharRNN):
    """`layer` run in the model's reading precision, in the thread that calls it (autocast is per thread)."""
    def run(x: torch.Tensor, state):
        with autocast_for(model, "read"):
            return layer(x, state)  # (1, t, H)
    return run


def _layer_stage(layer: nn.Module, source, outbox: queue.Queue, errors: list) -> None:
    """One RNN layer over the blocks from `source` (an iterator, or the queue of the layer below,
    where None ends the text), state carried, each output passed on; an error is kept for the
    caller and ends the text, and the layer below is drained so that it can finish."""
    try:
        with torch.inference_mode():  # (per thread)
            state = None
            for x in source if not isinstance(source, queue.Queue) else iter(source.get, None):
                x, state = layer(x, state)  # (1, t, H)
                outbox.put(x)
    except BaseException as e:  # raised again in the caller's thread
        errors.append(e)
        while isinstance(source, queue.Queue) and source.get() is not None:
            pass
    finally:
        outbox.put(None)


class Part(nn.Module):
    """Some of a CharRNN, bottom to top: its embedding, some RNN layers, its head (each optional)."""

    def __init__(self, embed: nn.Module | None, rnn: nn.Module | None, head: nn.Module | None):
        super().__init__()
        self.embed, self.rnn, self.head = embed, rnn, head

    def forward(self, x: torch.Tensor, state=None) -> tuple[torch.Tensor, object]:
        if self.embed is not None:
            x = self.embed(x)  # (1, t) -> (1, t, E)
        if self.rnn is not None:
            x, state = self.rnn(x, state)  # (1, t, H)
        if self.head is not None:
            x = self.head(x)  # (1, t, V)
        return x, state


def split_reader(reader: CharRNN, learn: str) -> tuple[Part | None, Part]:
    """The reading copy cut below its lowest adapted weight, as (frozen, learner): frozen never
    changes, so it reads the text once, in long blocks, without gradients; only the learner runs
    per chunk, and the backward pass never enters the frozen layers. For learn="all" nothing is frozen."""
    L = reader.rnn.num_layers
    if learn == "all":
        return None, Part(reader.embed, reader.rnn, reader.head)
    k = L if learn == "head" else L - 1  # the first RNN layer that adapts
    frozen = Part(reader.embed, reader.rnn_layers(0, k) if k else None, None).requires_grad_(False)
    return frozen, Part(None, reader.rnn_layers(k, L) if k < L else None, reader.head)


def _adaptive(model: CharRNN, ids: torch.Tensor, adapt: Adapt, bar, prior: torch.Tensor
              ) -> tuple[torch.Tensor, CharRNN]:
    """Dynamic evaluation on a copy of `model`: score a chunk, then learn from it. The copy runs
    without dropout, in fp32, with deterministic kernels, so the same text gives the same score.
    With adapt.mix, each chunk's score is the mix of the network and the counts, and the counts and
    mixer learn from the chunk after it is scored, as the network does. Returns the log-probs and
    the adapted copy (the network alone, without the counts)."""
    reader = copy.deepcopy(model).float().eval()
    frozen, learner = split_reader(reader, adapt.learn)
    params = list(learner.parameters())
    trained = [p.detach().clone() for p in params] if adapt.decay else []
    # fused: one kernel for the whole update, ~1.5x faster reading on this CPU, same numbers
    opt = torch.optim.Adam(params, lr=adapt.lr, fused=params[0].device.type in ("cpu", "cuda"))
    device = params[0].device
    x_all, y_all = ids[:-1].to(device)[None], ids[1:].to(device)[None]  # (1, N-1)
    counts = None
    # stream: the prior text, then ids; target j of ids[1:] is stream position P + 1 + j
    if adapt.mix is not None:
        stream = torch.cat([prior.cpu(), ids.cpu()]).numpy().astype("int64")
        counts = CountMixer(adapt.mix, stream, len(model.vocab), learned=len(prior))
    state, out = None, []
    deterministic = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True)
    with deterministic, autocast_for(model, "train"):  # it learns as it reads: auto keeps that fp32
        for i, x in _features(frozen, x_all, adapt.chunk):  # (1, t, C) what the learner reads
            y = y_all[:, i: i + x.size(1)]  # (1, t)
            logits, state = learner(x, state)  # (1, t, V)
            logprobs = _target_logprobs(logits, y)  # scored before the model learns from this chunk
            if counts is None:
                out.append(logprobs.detach())
            else:
                a = len(prior) + 1 + i
                mixed = counts.predict(a, a + y.size(1), logprobs.detach().double().cpu().numpy())
                out.append(torch.from_numpy(mixed))
            opt.zero_grad(set_to_none=True)
            (-logprobs.mean()).backward()
            opt.step()
            if adapt.decay:
                with torch.no_grad():
                    for p, p0 in zip(params, trained):
                        p.lerp_(p0, adapt.decay)  # p += decay * (p0 - p)
            if counts is not None:
                counts.learn()
            state = None if state is None else detach_state(state)
            bar.update(y.numel())
    return torch.cat([o.double().cpu() for o in out]), written_back(reader, learner)


@torch.no_grad()
def written_back(reader: CharRNN, learner: Part) -> CharRNN:
    """The reading copy as one model again: the learner's RNN layers are copies (split_reader), so
    their adapted weights are written back into the copy's own; its head is the learner's."""
    L = reader.rnn.num_layers
    if learner.rnn is not None and learner.rnn is not reader.rnn:
        k = L - learner.rnn.num_layers  # the first layer that adapted
        for i in range(k, L):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reader.rnn, f"{name}_l{i}").copy_(getattr(learner.rnn, f"{name}_l{i - k}"))
    return reader.requires_grad_(False).eval()


def _features(frozen: Part | None, x_all: torch.Tensor, chunk: int, block: int = 2048):
    """(start, input of the learner (1, t, C)) per chunk of x_all (1, N): the frozen part's output,
    computed a block of chunks at a time (one long pass costs far less than many short ones)."""
    block = max(chunk, block // chunk * chunk)
    state = None
    for b in range(0, x_all.size(1), block):
        with torch.no_grad():
            feats, state = (x_all[:, b: b + block],
                            None) if frozen is None else frozen(x_all[:, b: b + block], state)
        for i in range(0, feats.size(1), chunk):
            yield b + i, feats[:, i: i + chunk]


@torch.no_grad()
def nats_per_char(model: CharRNN, ids: torch.Tensor, streams: int = 1, chunk: int = 2048) -> float:
    """Mean next-char cross-entropy over `ids` (1-D), in nats. Every char after the first is a target.

    streams=1 reads the text as one sequence (the exact score). streams>1 cuts it into that many
    contiguous parts read side by side: ~streams times faster, and only the first few chars of
    each part lose their context, so during training it tracks the exact score closely."""
    if streams == 1:
        return score(model, ids).nats_per_char  # the exact score, computed as the CLI computes it
    was_training = model.training
    model.eval()
    with autocast_for(model, "read"):
        total = _streams_total(model, ids, streams, chunk)
    model.train(was_training)
    return total / (len(ids) - 1)


def _streams_total(model: CharRNN, ids: torch.Tensor, streams: int, chunk: int) -> float:
    """The summed cross-entropy of nats_per_char's streams, then of the leftover tail."""
    device = next(model.parameters()).device
    length = (len(ids) - 1) // streams
    x_all = ids[: streams * length].view(streams, length).to(device)  # (S, L)
    y_all = ids[1: streams * length + 1].view(streams, length).to(device)  # (S, L)
    total, state = 0.0, model.init_state(streams)
    for i in range(0, length, chunk):
        y = y_all[:, i: i + chunk]  # (S, t)
        _, state, loss = model(x_all[:, i: i + chunk], state, targets=y)
        total += loss.item() * y.numel()  # the mean over this chunk back to a sum
        state = detach_state(state)
    # The leftover tail (at most streams-1 chars) is scored on its own, from a zero state.
    tail_start = streams * length
    if len(ids) - 1 > tail_start:
        y = ids[tail_start + 1:].view(1, -1).to(device)  # (1, t)
        _, _, loss = model(ids[tail_start:-1].view(1, -1).to(device), model.init_state(1), targets=y)
        total += loss.item() * y.numel()
    return total


def _mix_from(orders: str) -> Mix:
    try:
        return Mix(orders=tuple(int(n) for n in orders.split(",")))
    except ValueError:
        raise ValueError(f"--mix-orders must be comma-separated whole numbers from 1 to 16, "
                         f"not {orders!r}") from None


def _prior_ids(model: CharRNN, prior: str) -> torch.Tensor:
    """The token ids the count model starts from: the training split of train.py's corpus, none, or a file."""
    if prior == "none":
        return torch.zeros(0, dtype=torch.long)
    text = model.vocab.normalize(data.read_text(data.find_corpus() if prior == "train" else prior))
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    return data.split(ids)[0] if prior == "train" else ids


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charrnn.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights",
                   help="folder with config.json + model.safetensors, or a Hub repo id")
    p.add_argument("--data", default=None,
                   help="UTF-8 text file to score (default: the corpus train.py finds)")
    p.add_argument("--split", choices=["all", "val"], default="all",
                   help="val: only the last 20%% (train.py's validation split)")
    p.add_argument("--max-chars", type=int, default=None,
                   help="score at most this many chars (from the start of the split)")
    p.add_argument("--adapt", action="store_true",
                   help="adaptive scoring: the model learns from each chunk after scoring it")
    p.add_argument("--adapt-lr", type=float, default=Adapt.lr,
                   help="Adam learning rate of the adaptive steps (default: %(default)s)")
    p.add_argument("--adapt-decay", type=float, default=Adapt.decay,
                   help="share of the way back to the trained weights after each step (default: %(default)s)")
    p.add_argument("--adapt-learn", choices=LEARNABLE, default=Adapt.learn,
                   help="the weights that adapt: all, top (the output layer and the last RNN layer) or head "
                        "(the output layer): fewer read faster (default: %(default)s)")
    p.add_argument("--mix", action="store_true",
                   help="adaptive scoring mixed with a count model of the prior text and the text read "
                        "(implies --adapt)")
    p.add_argument("--mix-orders", default=",".join(map(str, Mix.orders)),
                   help="context lengths of the count model mixed with the network (default: %(default)s)")
    p.add_argument("--mix-prior", default="train",
                   help="text the counts start from: 'train' (the training split of the corpus train.py "
                        "finds), 'none', or a UTF-8 text file (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16: matrix products in bfloat16; auto: bf16 where the CPU or GPU does it in "
                        "hardware, except the adaptive read's learning (charrnn/precision.py) (default: "
                        "%(default)s)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_chars is not None and args.max_chars < 2:
            raise ValueError("--max-chars must be at least 2")
        adapt = Adapt(args.adapt_lr, args.adapt_decay, mix=_mix_from(args.mix_orders) if args.mix else None,
                      learn=args.adapt_learn) \
            if args.adapt or args.mix else None
        device = resolve_device(args.device)
        model = CharRNN.from_pretrained(args.weights, map_location=device)  # the one loading path
        use(model, args.precision)
        configure("read", 1 if adapt else model.rnn.num_layers)  # the static read: a thread per layer
        path = args.data or data.find_corpus()
        text = model.vocab.normalize(data.read_text(path))
        unknown = model.vocab.unknown(text)
        ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
        if args.split == "val":
            ids = data.split(ids)[1]
        if args.max_chars is not None:
            ids = ids[: args.max_chars]
        if len(ids) < 2:
            raise ValueError(f"{path} has fewer than 2 scorable characters")
        prior = _prior_ids(model, args.mix_prior) if args.mix else None
    except (data.DataError, WeightsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"note: {describe(args.precision, device)}", file=sys.stderr)
    result = score(model, ids, adapt, progress=len(ids) >= PROGRESS_FROM, prior=prior)
    print(json.dumps(result.summary(sum(unknown.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
