"""Adaptive reading (dynamic evaluation, Krause et al. 2018): the model learns the text as it reads it.

The text is read in chunks: each chunk is scored first, then the model takes one Adam step on
that chunk's loss (and, with a decay, is pulled back toward the trained weights), so it learns the
names and turns of phrase of the text it is reading. It works on a copy: the caller's model and
the weights on disk never change. charrnn.score.score is the entry point.
"""
import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from .mixing import CountMixer, Mix
from .model import CharRNN, detach_state, target_logprobs
from .precision import autocast_for

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


def read(model: CharRNN, ids: torch.Tensor, adapt: Adapt, progress, prior: torch.Tensor
         ) -> tuple[torch.Tensor, CharRNN]:
    """Dynamic evaluation on a copy of `model`: score a chunk, then learn from it. The copy runs
    without dropout, in fp32, with deterministic kernels, so the same text gives the same score.
    With adapt.mix, each chunk's score is the mix of the network and the counts, and the counts and
    mixer learn from the chunk after it is scored, as the network does. Returns the (N-1,)
    log-probs and the adapted copy (the network alone, without the counts)."""
    reader = copy.deepcopy(model).float().eval()
    frozen, learner = split_reader(reader, adapt.learn)
    device = next(learner.parameters()).device
    x_all, y_all = ids[:-1].to(device)[None], ids[1:].to(device)[None]  # (1, N-1)
    step = AdaptStep(learner, adapt)
    counts = None
    if adapt.mix is not None:  # the count model's sequence: the prior text, then ids
        sequence = torch.cat([prior.cpu(), ids.cpu()]).numpy().astype("int64")
        counts = CountMixer(adapt.mix, sequence, len(model.vocab), learned=len(prior))
    state, out = None, []
    deterministic = torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True)
    with deterministic, autocast_for(model, "train"):  # it learns as it reads: auto keeps that fp32
        for i, x in features(frozen, x_all, adapt.chunk):  # (1, t, C) what the learner reads
            y = y_all[:, i: i + x.size(1)]  # (1, t)
            logits, state = learner(x, state)  # (1, t, V)
            logprobs = target_logprobs(logits, y)  # scored before the model learns from this chunk
            out.append(logprobs.detach() if counts is None else mixed(counts, len(prior) + 1 + i, logprobs))
            step(logprobs)
            if counts is not None:
                counts.learn()
            state = None if state is None else detach_state(state)
            progress.update(y.numel())
    return torch.cat([o.double().cpu() for o in out]), written_back(reader, learner)


def mixed(counts: CountMixer, start: int, logprobs: torch.Tensor) -> torch.Tensor:
    """(t,) the network's log-probs mixed with the counts' for the chunk whose first target is at
    `start` in the count model's sequence (target j of ids[1:] is at len(prior) + 1 + j there)."""
    end = start + logprobs.numel()
    return torch.from_numpy(counts.predict(start, end, logprobs.detach().double().cpu().numpy()))


class AdaptStep:
    """One Adam step on a chunk's loss, then the pull back toward the trained weights (adapt.decay)."""

    def __init__(self, learner: Part, adapt: Adapt):
        self.params = list(learner.parameters())
        self.decay = adapt.decay
        self.trained = [p.detach().clone() for p in self.params] if adapt.decay else []
        # fused: one kernel for the whole update, ~1.5x faster reading on this CPU, same numbers
        fused = self.params[0].device.type in ("cpu", "cuda")
        self.opt = torch.optim.Adam(self.params, lr=adapt.lr, fused=fused)

    def __call__(self, logprobs: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        (-logprobs.mean()).backward()
        self.opt.step()
        if self.decay:
            with torch.no_grad():
                for p, p0 in zip(self.params, self.trained):
                    p.lerp_(p0, self.decay)  # p += decay * (p0 - p)


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


def features(frozen: Part | None, x_all: torch.Tensor, chunk: int, block: int = 2048):
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
