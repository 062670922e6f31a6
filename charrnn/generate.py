"""Stateful generation: the seed is encoded once, then one step per new char carries the state.

Greedy and sampled continuations run together as a batch of 2 (row 0 greedy, row 1 sampled),
so both cost one forward pass per step.
"""
from dataclasses import dataclass, field, replace
from typing import Iterator

import torch

from .model import CharRNN, select_state
from .text import DEFAULT_SEED

MAX_SEED_CHARS = 2000  # the state forgets far sooner; a longer seed only costs time
STOPS = {"sentence": ".!?", "paragraph": "\n"}


@dataclass(frozen=True)
class Settings:
    length: int = 300  # new chars per continuation
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    sampling_seed: int | None = None  # same seed + same settings = same text
    stop_at: str | None = None  # None, "sentence" or "paragraph"

    def validated(self) -> "Settings":
        if not 1 <= self.length <= 10_000:
            raise ValueError(f"length must be between 1 and 10000, not {self.length}")
        if not 0 <= self.temperature <= 10:
            raise ValueError(f"temperature must be between 0 and 10, not {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be 0 (off) or positive, not {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p}")
        if self.stop_at not in (None, *STOPS):
            raise ValueError(f"stop_at must be one of {sorted(STOPS)} or None, not {self.stop_at!r}")
        return self


@dataclass
class Output:
    seed: str  # the seed as the model read it (normalized, filtered, trimmed)
    greedy: str = ""  # continuations so far, seed excluded
    sampled: str = ""
    probs: list[float] = field(default_factory=list)  # model probability of each sampled char
    notices: list[str] = field(default_factory=list)  # what was done to the seed, for the user
    finished: bool = False


def prepare_seed(model: CharRNN, text: str, max_chars: int = MAX_SEED_CHARS) -> tuple[str, list[str]]:
    """Normalize the seed the way the model's text was; report (never silently drop) what it cannot read."""
    vocab, notices = model.vocab, []
    text = vocab.normalize(text or "")
    unknown = vocab.unknown(text)
    if unknown:
        shown = " ".join(repr(c) for c, _ in unknown.most_common(12))
        notices.append(f"Dropped {sum(unknown.values())} character(s) the model does not know: {shown}")
        text = "".join(c for c in text if c in vocab.stoi)
    if len(text) > max_chars:
        notices.append(f"The seed is {len(text)} characters long; only its last {max_chars} were used")
        text = text[-max_chars:]
    if not text:
        notices.append("Empty seed: starting from a new line")
        text = DEFAULT_SEED if DEFAULT_SEED in vocab.stoi else vocab.chars[0]
    return text, notices


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the nucleus of mass top_p. # (B, V)"""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # keep chars until the mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def stream(model: CharRNN, seed_text: str, settings: Settings = Settings(), every: int = 1) -> Iterator[Output]:
    """Yield the growing greedy and sampled continuations every `every` chars, and once at the end."""
    settings = settings.validated()
    model.eval()
    device = next(model.parameters()).device
    seed, notices = prepare_seed(model, seed_text)
    out = Output(seed=seed, notices=notices)
    gen = torch.Generator(device=device)
    gen.manual_seed(settings.sampling_seed if settings.sampling_seed is not None else torch.seed())
    stops = STOPS.get(settings.stop_at, "")

    ids = torch.tensor([model.vocab.encode(seed)], device=device)  # (1, T)
    logits, state = model(ids)  # the seed is read once
    logits = logits[:, -1].expand(2, -1)  # (2, V): row 0 greedy, row 1 sampled
    state = select_state(state, [0, 0])
    done = [False, False]
    for i in range(settings.length):
        probs = logits.float().softmax(-1)  # (2, V)
        greedy = probs[0].argmax()
        if settings.temperature == 0:
            sampled = greedy
        else:
            scaled = filter_logits(logits[1:].float() / settings.temperature, settings.top_k, settings.top_p)
            sampled = torch.multinomial(scaled.softmax(-1), 1, generator=gen)[0, 0]
        g, s = model.vocab.chars[greedy], model.vocab.chars[sampled]
        if not done[0]:
            out.greedy += g
            done[0] = g in stops
        if not done[1]:
            out.sampled += s
            out.probs.append(probs[1, sampled].item())
            done[1] = s in stops
        if all(done) or i == settings.length - 1:
            break
        if (i + 1) % every == 0:
            yield replace(out, probs=list(out.probs), notices=list(out.notices))
        logits, state = model(torch.stack([greedy, sampled]).view(2, 1), state)
        logits = logits[:, -1]  # (2, V)
    out.finished = True
    yield out


def complete(model: CharRNN, seed_text: str, settings: Settings = Settings()) -> Output:
    """The finished continuations, without streaming."""
    for out in stream(model, seed_text, settings, every=10**9):
        pass
    return out
