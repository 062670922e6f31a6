"""Stateful generation: the seed is read once, then one step per new char carries the state.

Greedy and sampled continuations run together as a batch of 2 (row 0 greedy, row 1 sampled),
so both cost one step per char. A step calls torch.lstm_cell / torch.gru_cell on the model's
own weights: the same maths as nn.LSTM in eval mode, minus its per-call overhead, which is most
of the cost of a one-char step.
"""
import random
import time
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch

from .model import CharRNN
from .text import DEFAULT_SEED, normalize

MAX_SEED_CHARS = 2000  # the state forgets far sooner; a longer seed only costs time
MAX_LENGTH = 10_000
STOPS = {"sentence": ".!?", "paragraph": "\n"}  # the corpus has one line per paragraph
# Look-alikes for chars a vocabulary may lack, tried after case and accent variants.
LOOKALIKES = {"—": "–-", "―": "–-", "‐": "-", "‑": "-", "−": "-", "–": "-",
              "…": ["..."], "„": '"“', "‟": '"“', "″": '"', "`": "'‘", "´": "'’", "′": "'’",
              "“": '"', "”": '"', "‘": "'", "’": "'", "«": '"', "»": '"', '"': "“«", "'": "’",
              "\t": " ", "\u00a0": " ", "\u2009": " ", "\u202f": " "}


@dataclass(frozen=True)
class Settings:
    length: int = 300  # new chars per continuation
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    sampling_seed: int | None = None  # same seed + same settings = same text; None = a fresh one
    stop_at: str | None = None  # None, "sentence" or "paragraph"

    def validated(self) -> "Settings":
        if isinstance(self.length, bool) or not isinstance(self.length, int) or not 1 <= self.length <= MAX_LENGTH:
            raise ValueError(f"length must be a whole number from 1 to {MAX_LENGTH}, not {self.length!r}")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 10:
            raise ValueError(f"temperature must be between 0 and 10, not {self.temperature!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top-k must be 0 (off) or a positive whole number, not {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise ValueError(f"top-p must be in (0, 1], not {self.top_p!r}")
        if self.sampling_seed is not None and (
                isinstance(self.sampling_seed, bool) or not isinstance(self.sampling_seed, int)
                or not 0 <= self.sampling_seed < 2**63):
            raise ValueError(f"sampling seed must be a whole number from 0 to 2**63-1, not {self.sampling_seed!r}")
        if self.stop_at not in (None, *STOPS):
            raise ValueError(f"stop_at must be one of {sorted(STOPS)} or None, not {self.stop_at!r}")
        return self


@dataclass
class Output:
    seed: str  # the seed as the model read it (normalized, mapped, trimmed)
    greedy: str = ""  # continuations so far, seed excluded
    sampled: str = ""
    probs: list[float] = field(default_factory=list)  # model probability (temperature 1) of each sampled char
    notices: list[str] = field(default_factory=list)  # what was done to the seed, for the user
    finished: bool = False
    candidates: list[tuple[str, float]] = field(default_factory=list)  # likeliest next chars after seed+sampled
    sampling_seed: int | None = None  # the seed the sampled row used: reuse it to get the same text


# ---------------------------------------------------------------------------------------- seed

def _variants(c: str) -> list[str]:
    """Replacements for a char the vocabulary lacks, best first: other case, no accent, look-alikes."""
    bare = "".join(x for x in unicodedata.normalize("NFD", c) if not unicodedata.combining(x))
    out = [c.lower(), c.upper(), bare, bare.lower(), bare.upper()]
    return [v for v in out if v != c] + list(LOOKALIKES.get(c, ""))


def prepare_seed(model: CharRNN, text: str, max_chars: int = MAX_SEED_CHARS) -> tuple[str, list[str]]:
    """The seed the model will read, and notices for the user: chars the vocabulary lacks are
    mapped to a close char (á -> a for an accent-free model) or dropped, and always reported."""
    vocab, notices = model.vocab, []
    text = normalize(text or "")  # NFC only: accents are mapped below, where they can be reported
    if len(text) > max_chars:
        notices.append(f"The seed is {len(text):,} characters long; only its last {max_chars:,} were used.")
        text = text[-max_chars:]
    kept, mapped, dropped = [], {}, {}
    for c in text:
        if c in vocab.stoi:
            kept.append(c)
            continue
        sub = next((v for v in _variants(c) if v and all(x in vocab.stoi for x in v)), None)
        if sub is None:
            dropped[c] = dropped.get(c, 0) + 1
        else:
            mapped[c] = sub
            kept.append(sub)
    if mapped:
        shown = ", ".join(f"{c!r} → {s!r}" for c, s in list(mapped.items())[:12])
        notices.append(f"Replaced characters the model does not know with close ones: {shown}.")
    if dropped:
        shown = " ".join(repr(c) for c, _ in sorted(dropped.items(), key=lambda kv: -kv[1])[:12])
        more = f" and {len(dropped) - 12} more" if len(dropped) > 12 else ""
        notices.append(f"Dropped {sum(dropped.values())} character(s) the model does not know: {shown}{more}.")
    text = "".join(kept)
    if not text:
        notices.append("The seed is empty: starting from a new line.")
        text = DEFAULT_SEED if DEFAULT_SEED in vocab.stoi else vocab.chars[0]
    return text, notices


# ---------------------------------------------------------------------------------------- steps

Step = Callable[[torch.Tensor, list], tuple[torch.Tensor, list]]


def make_step(model: CharRNN) -> Step:
    """step(ids (B,), layers) -> (logits (B, V), layers): one char through the model, eval mode.

    `layers` holds each layer's state: (h, c) for LSTM, h for GRU, each (B, H)."""
    rnn = model.rnn
    cell = torch.lstm_cell if model.cell == "lstm" else torch.gru_cell
    weights = [tuple(getattr(rnn, f"{name}_l{i}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
               for i in range(rnn.num_layers)]
    embed, head_w, head_b = model.embed.weight, model.head.weight, model.head.bias

    def step(ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        x = embed[ids]  # (B, E)
        new = []
        for w, s in zip(weights, layers):
            s = cell(x, s, *w)
            x = s[0] if isinstance(s, tuple) else s  # (B, H)
            new.append(s)
        return torch.addmm(head_b, x, head_w.t()), new  # (B, V)

    return step


def read(model: CharRNN, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Read the seed ids (B, T) in one forward pass, in eval mode (without leaving the model in it).
    Returns the logits after the last char (B, V) and the state per layer, as make_step wants it."""
    was_training = model.training
    model.eval()
    logits, state, _ = model(ids)  # (B, T, V)
    model.train(was_training)
    if isinstance(state, tuple):  # LSTM: (h, c), each (L, B, H)
        return logits[:, -1], [(h, c) for h, c in zip(state[0], state[1])]
    return logits[:, -1], list(state)


# ---------------------------------------------------------------------------------------- sampling

def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the nucleus of mass top_p. # (B, V)"""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        p = sorted_logits.softmax(-1)
        drop = p.cumsum(-1) - p >= top_p  # keep chars until the mass reaches top_p (the first always stays)
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


def top_chars(model: CharRNN, probs: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
    """The k likeliest chars of a distribution probs (V,), likeliest first."""
    p, i = torch.topk(probs, min(k, probs.numel()))
    return [(model.vocab.chars[j], q) for j, q in zip(i.tolist(), p.tolist())]


@torch.inference_mode()
def next_chars(model: CharRNN, text: str, k: int = 10) -> list[tuple[str, float]]:
    """The model's k likeliest next chars after `text` (prepared like a seed), with probabilities."""
    seed, _ = prepare_seed(model, text)
    device = next(model.parameters()).device
    logits, _ = read(model, torch.tensor([model.vocab.encode(seed)], device=device))
    return top_chars(model, logits[0].float().softmax(-1), k)


@torch.inference_mode()
def stream(model: CharRNN, seed_text: str, settings: Settings = Settings(), every: int = 1,
           interval: float = 0.0, top: int = 10) -> Iterator[Output]:
    """Yield the growing greedy and sampled continuations, and once more when finished.

    A partial result is yielded after a char once `every` chars and `interval` seconds have
    passed since the last one; with every=1 the first char comes out at once, so a page shows
    something immediately, and `interval` keeps a fast model from flooding it with updates.
    Each result carries the `top` likeliest chars to follow the sampled text."""
    settings = settings.validated()
    device = next(model.parameters()).device
    seed, notices = prepare_seed(model, seed_text)
    sampling_seed = settings.sampling_seed
    if sampling_seed is None:
        sampling_seed = random.randrange(2**31)  # reported in Output, so any text can be made again
    out = Output(seed=seed, notices=notices, sampling_seed=sampling_seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(sampling_seed)
    stops, chars, temperature = STOPS.get(settings.stop_at, ""), model.vocab.chars, settings.temperature

    step = make_step(model)
    logits, layers = read(model, torch.tensor([model.vocab.encode(seed)], device=device))  # (1, V)
    logits = logits.expand(2, -1)  # (2, V): row 0 greedy, row 1 sampled, same start
    layers = [tuple(t.expand(2, -1).contiguous() for t in s) if isinstance(s, tuple) else s.expand(2, -1).contiguous()
              for s in layers]
    probs = logits.float().softmax(-1)  # (2, V) the model's distribution of each row's next char
    end_probs = probs[1]  # distribution of the char after the sampled text as shown
    done, since, last_yield = [False, False], 0, float("-inf")
    for i in range(settings.length):
        greedy = probs[0].argmax()
        if temperature == 0:
            sampled = greedy
        else:
            scaled = filter_logits(logits[1:].float() / temperature, settings.top_k, settings.top_p)
            sampled = torch.multinomial(scaled.softmax(-1), 1, generator=gen).view(())
        pair = torch.stack([greedy, sampled])  # (2,)
        p_sampled = probs[1, sampled]
        g, s = pair.tolist()  # the chars are needed on the host: to stop, and to stream text
        open_g, open_s = not done[0], not done[1]
        if open_g:
            out.greedy += chars[g]
            done[0] = chars[g] in stops
        if open_s:
            out.sampled += chars[s]
            out.probs.append(p_sampled.item())
            done[1] = chars[s] in stops
        # Also after the last char: its distribution gives the next-char candidates.
        logits, layers = step(pair, layers)  # (2, V)
        probs = logits.float().softmax(-1)
        if open_s:
            end_probs = probs[1]
        if all(done) or i == settings.length - 1:
            break
        since += 1
        if since >= every and time.perf_counter() - last_yield >= interval:
            out.candidates = top_chars(model, end_probs, top)
            yield replace(out, probs=list(out.probs), notices=list(out.notices), candidates=list(out.candidates))
            since, last_yield = 0, time.perf_counter()
    out.candidates = top_chars(model, end_probs, top)
    out.finished = True
    yield out


def complete(model: CharRNN, seed_text: str, settings: Settings = Settings()) -> Output:
    """The finished continuations, without streaming."""
    for out in stream(model, seed_text, settings, every=MAX_LENGTH + 1):
        pass
    return out
