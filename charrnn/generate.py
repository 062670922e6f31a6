"""Stateful generation: the seed is prefilled once, then one step per new char carries the state.

Every request is two rows, greedy and sampled, stepped as one batch, so both cost one step per
char. `stream` runs one request alone; `charrnn.engine` runs many requests' rows as one batch.
Both pick chars with `pick`, which samples each row with its own settings and its own random
numbers, so a request's text depends only on its inputs and its sampling seed. A step calls
torch.lstm_cell / torch.gru_cell on the model's own weights: the same maths as nn.LSTM in eval
mode, minus its per-call overhead, which is most of the cost of a one-char step.
"""
import math
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator

import torch

from .model import CharRNN
from .precision import autocast_for
from .text import DEFAULT_SEED

MAX_SEED_CHARS = 2000  # the state forgets far sooner; a longer seed only costs time
MAX_LENGTH = 10_000
STOPS = {"sentence": ".!?", "paragraph": "\n"}  # the corpus has one line per paragraph
# Below this a temperature would overflow float32 logits (1e-38 gave inf and NaN): such rows are
# sampled at this temperature instead, which keeps only the likeliest char (and exact ties).
MIN_TEMPERATURE = 1e-30


# ---------------------------------------------------------------------------------------- settings

class SettingsError(ValueError):
    """A generation setting out of its bounds; the message is a sentence for the user."""


@dataclass(frozen=True)
class Bounds:
    """What a caller accepts for each setting. The package's defaults are what the model can do;
    the app passes its sliders' ranges, and -1 as its fresh_sampling_seed ("random")."""
    length: tuple[int, int] = (1, MAX_LENGTH)
    temperature: tuple[float, float] = (0.0, 10.0)
    top_k: tuple[int, int] = (0, 100_000)  # 0 = off; the app's maximum is the vocabulary size
    top_p: tuple[float, float] = (1e-6, 1.0)  # 1 = off
    sampling_seed: tuple[int, int] = (0, 2**63 - 1)
    fresh_sampling_seed: int | None = None  # the value that asks for a fresh one (besides None and "")
    stops: tuple[tuple[str | None, str | None], ...] = ((None, None), ("sentence", "sentence"),
                                                        ("paragraph", "paragraph"))  # (name, rule)


@dataclass(frozen=True)
class Settings:
    length: int = 300  # new chars per continuation
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    sampling_seed: int | None = None  # same sampling seed + same settings = same text; None = a fresh one
    stop_at: str | None = None  # None, "sentence" or "paragraph"

    def validated(self) -> "Settings":
        return check_settings(self.length, self.temperature, self.top_k, self.top_p, self.sampling_seed,
                              self.stop_at)


def check_settings(length, temperature, top_k, top_p, sampling_seed=None, stop_at=None,
                   bounds: Bounds = Bounds()) -> Settings:
    """The one validator: raw values (from a form, JSON or the command line) as Settings within
    `bounds`, or SettingsError with a sentence that names the setting and its range."""
    given = sampling_seed is not None and sampling_seed != ""
    sampling_seed = (_number(sampling_seed, "The sampling seed", *bounds.sampling_seed, whole=True)
                     if given else None)
    stops = dict(bounds.stops)
    if not (stop_at is None or isinstance(stop_at, str)) or stop_at not in stops:  # [] or {} are unhashable
        names = ", ".join(str(name) for name in stops if name is not None)
        raise SettingsError(f"'Stop at' must be one of: {names}{' (or none)' if None in stops else ''}.")
    return Settings(length=_number(length, "Length", *bounds.length, whole=True),
                    temperature=_number(temperature, "Temperature", *bounds.temperature),
                    top_k=_number(top_k, "Top-k", *bounds.top_k, whole=True),
                    top_p=_number(top_p, "Top-p", *bounds.top_p),
                    sampling_seed=None if sampling_seed == bounds.fresh_sampling_seed else sampling_seed,
                    stop_at=stops[stop_at])


def check_seed_text(seed) -> str:
    """The seed as text ("" for none), or SettingsError: API callers may send anything."""
    if seed is None:
        return ""
    if not isinstance(seed, str):
        raise SettingsError("The seed must be text.")
    return seed


def _number(value, name: str, lo, hi, whole: bool = False):
    """`value` as a number in [lo, hi] (an int if whole), or SettingsError saying why not."""
    shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
    kind = f"a whole number from {lo:,} to {hi:,}" if whole else f"a number from {lo:g} to {hi:g}"
    error = SettingsError(f"{name} must be {kind}, not {shown}.")
    if isinstance(value, bool):
        raise error
    if isinstance(value, int):
        x = value  # exact: a 400-digit JSON int must not go through float (OverflowError)
    else:
        try:
            x = float(value)  # the page sends numbers; API callers may send anything
        except (TypeError, ValueError, OverflowError):
            raise error from None
        if not math.isfinite(x):
            raise error
    if not lo <= x <= hi or (whole and x != int(x)):
        raise error
    return int(x) if whole else float(x)


@dataclass
class Output:
    seed: str  # the seed as the model read it (normalized, mapped, trimmed)
    greedy: str = ""  # continuations so far, seed excluded
    sampled: str = ""
    probs: list[float] = field(default_factory=list)  # model probability (temperature 1) of each sampled char
    notices: list[str] = field(default_factory=list)  # what was done to the seed, for the user
    finished: bool = False
    # likeliest next chars after seed+sampled
    candidates: list[tuple[str, float]] = field(default_factory=list)
    sampling_seed: int | None = None  # the seed the sampled row used: reuse it to get the same text


# ---------------------------------------------------------------------------------------- seed

def mapping_notices(subs: dict[str, str]) -> list[str]:
    """Sentences for the page about the chars Vocab.map_unknown replaced: case changes (a letter the
    vocabulary has only in the other case) apart from other close chars."""
    case = [(c, r) for c, r in subs.items() if r != c and r.lower() == c.lower()]
    other = [(c, r) for c, r in subs.items() if (c, r) not in case]
    notices = []
    if case:
        shown = ", ".join(f"{c!r} → {r!r}" for c, r in case[:12])
        notices.append(f"The model's vocabulary lacks these letters in this case, so they were read in the "
                       f"other case: {shown}.")
    if other:
        shown = ", ".join(f"{c!r} → {r!r}" for c, r in other[:12])
        notices.append(f"Replaced characters the model does not know with close ones: {shown}.")
    return notices


def prepare_seed(model: CharRNN, text: str, max_chars: int = MAX_SEED_CHARS) -> tuple[str, list[str]]:
    """The seed the model will read, and notices for the user: chars the vocabulary lacks are
    mapped to a close char (Vocab.map_unknown: á -> a for an accent-free model) or dropped, and
    always reported; then the result is trimmed to its last `max_chars` (so junk after good text
    leaves the text)."""
    stoi = model.vocab.stoi
    text, subs = model.vocab.map_unknown(text or "")
    notices = mapping_notices(subs)
    dropped = Counter(c for c in text if c not in stoi)
    if dropped:
        shown = " ".join(repr(c) for c, _ in dropped.most_common(12))
        more = f" and {len(dropped) - 12} more" if len(dropped) > 12 else ""
        notices.append(f"Dropped {sum(dropped.values())} character(s) the model does not know: "
                       f"{shown}{more}.")
    kept = [c for c in text if c in stoi]
    text = "".join(kept)
    if len(text) > max_chars:
        notices.append(f"The seed is {len(text):,} characters long; only its last {max_chars:,} were used.")
        text = text[-max_chars:]
    if not text:
        notices.append("The seed is empty: starting from a new line.")
        text = DEFAULT_SEED if DEFAULT_SEED in stoi else model.vocab.chars[0]
    return text, notices


# ---------------------------------------------------------------------------------------- steps

Step = Callable[[torch.Tensor, list], tuple[torch.Tensor, list]]


def make_step(model: CharRNN) -> Step:
    """step(ids (B,), layers) -> (logits (B, V), layers): one char through the model, eval mode.

    `layers` holds each layer's state: (h, c) for LSTM, h for GRU, each (B, H). In bf16
    (model.precision) the gates' products run in bf16; the state and the head stay fp32."""
    rnn = model.rnn
    cell = torch.lstm_cell if model.cell == "lstm" else torch.gru_cell
    weights = [tuple(getattr(rnn, f"{name}_l{i}") for name in ("weight_ih", "weight_hh",
                                                               "bias_ih", "bias_hh"))
               for i in range(rnn.num_layers)]
    embed, head_w, head_b = model.embed.weight, model.head.weight, model.head.bias

    def step(ids: torch.Tensor, layers: list) -> tuple[torch.Tensor, list]:
        x = embed[ids]  # (B, E)
        new = []
        with autocast_for(model, "generate"):
            for w, s in zip(weights, layers):
                s = cell(x, s, *w)
                x = s[0] if isinstance(s, tuple) else s  # (B, H)
                new.append(s)
        return torch.addmm(head_b, x.float(), head_w.t()), new  # (B, V)

    return step


def prefill(model: CharRNN, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The prefill: the model runs over the seed ids (B, T) in one forward pass, in eval mode
    (without leaving the model in it). Returns the logits after the last char (B, V) and the
    state per layer, as make_step wants it."""
    was_training = model.training
    model.eval()
    with autocast_for(model, "generate"):
        logits, state, _ = model(ids)  # (B, T, V)
    model.train(was_training)
    logits = logits[:, -1].float()  # the steps carry fp32 state and logits, whatever the precision
    if isinstance(state, tuple):  # LSTM: (h, c), each (L, B, H)
        return logits, [(h.float(), c.float()) for h, c in zip(state[0], state[1])]
    return logits, [h.float() for h in state]


# ---------------------------------------------------------------------------------------- sampling

def pick(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
         draw: torch.Tensor, filtered: bool | None = None) -> torch.Tensor:
    """The next char of every row (B,), each with its own settings: temperature (B,) (0 = greedy),
    top_k (B,) (0 = off), top_p (B,) (1 = off) and a uniform random number draw (B,) in [0, 1).

    The char is found by inverse-CDF lookup of the row's own draw in its own distribution, in
    vocabulary order, so a row's result never depends on the other rows. `filtered` says whether
    any row uses top-k or top-p (None: look); without, the sort they need is skipped."""
    V = logits.size(-1)
    logits = logits.float()
    greedy = logits.argmax(-1)  # (B,)
    # Subtracting the max first keeps tiny temperatures finite: the likeliest char scores 0.
    scaled = (logits - logits.max(-1, keepdim=True).values) / temperature.clamp_min(MIN_TEMPERATURE)[:, None]
    p = scaled.softmax(-1)  # (B, V)
    if filtered is None:
        filtered = bool((top_k > 0).any() or (top_p < 1).any())
    if filtered:
        p = p * _kept(p, top_k, top_p)
    cdf = p.cumsum(-1)  # (B, V)
    idx = torch.searchsorted(cdf, (draw * cdf[:, -1])[:, None], right=True)  # (B, 1)
    rank = torch.arange(V, device=logits.device)
    last = torch.where(p > 0, rank, 0).max(-1, keepdim=True).values  # rounding can never pick a dropped char
    drawn = torch.minimum(idx, last)[:, 0]
    return torch.where(temperature > 0, drawn, greedy)


def _kept(p: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Which chars each row keeps (B, V), in vocabulary order: its top-k, then within those the
    nucleus of mass top_p (the likeliest char always stays)."""
    V = p.size(-1)
    sorted_p, order = p.sort(dim=-1, descending=True, stable=True)  # (B, V), ties keep argmax first
    in_k = torch.arange(V, device=p.device) < torch.where(top_k > 0, top_k, V)[:, None]
    sorted_p = sorted_p * in_k
    sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)  # top-p is taken on what top-k kept
    keep = in_k & (sorted_p.cumsum(-1) - sorted_p < top_p[:, None])
    return keep.scatter(-1, order, keep)


def top_chars(model: CharRNN, probs: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
    """The k likeliest chars of a distribution probs (V,), likeliest first."""
    p, i = torch.topk(probs, min(k, probs.numel()))
    return [(model.vocab.chars[j], q) for j, q in zip(i.tolist(), p.tolist())]


@torch.inference_mode()
def next_chars(model: CharRNN, text: str, k: int = 10) -> list[tuple[str, float]]:
    """The model's k likeliest next chars after `text` (prepared like a seed), with probabilities."""
    seed, _ = prepare_seed(model, text)
    device = next(model.parameters()).device
    logits, _ = prefill(model, torch.tensor([model.vocab.encode(seed)], device=device))
    return top_chars(model, logits[0].float().softmax(-1), k)


# ---------------------------------------------------------------------------------------- requests

GREEDY, SAMPLED = 0, 1  # a request's two rows


class Job:
    """One request: its prepared seed, settings and random draws, and its growing Output.
    The thread that steps it writes; any thread may take a snapshot()."""

    def __init__(self, model: CharRNN, seed_text: str, settings: Settings = Settings()):
        self.settings = settings = settings.validated()
        self.model = model
        seed, notices = prepare_seed(model, seed_text)
        sampling_seed = settings.sampling_seed
        if sampling_seed is None:
            sampling_seed = random.randrange(2**31)  # reported in Output, so any text can be made again
        self.out = Output(seed=seed, notices=notices, sampling_seed=sampling_seed)
        # The sampled row's own random numbers, one per char, drawn up front from its own generator.
        gen = torch.Generator().manual_seed(sampling_seed)
        self.draws = torch.rand(settings.length, generator=gen, dtype=torch.float64).tolist()
        self.stops = STOPS.get(settings.stop_at, "")
        self.growing = [True, True]  # greedy, sampled row: False once at its length or its stop rule
        self.end_probs = None  # (V,) the distribution after seed + sampled text, for the candidates
        # (logits (1, V), state per layer (1, H)) after the seed, once prefill() has run
        self.start = None
        self.finished = False  # set once the last char and the candidates after it are in (Output.finished)
        self.lock = threading.Lock()

    @torch.inference_mode()
    def prefill(self) -> tuple[torch.Tensor, list]:
        """The logits (1, V) and the state per layer after the seed, computed once, in the calling
        thread: the engine prefills in a thread of its own, beside the batch's steps."""
        if self.start is None:
            device = next(self.model.parameters()).device
            ids = torch.tensor([self.model.vocab.encode(self.out.seed)], device=device)  # (1, T)
            self.start = prefill(self.model, ids)
        return self.start

    def row_settings(self) -> tuple[list[float], list[int], list[float]]:
        """Each row's temperature, top-k and top-p: row 0 greedy, row 1 as the settings say."""
        s = self.settings
        return [0.0, float(s.temperature)], [0, s.top_k], [1.0, float(s.top_p)]

    def draw(self, kind: int) -> float:
        return self.draws[len(self.out.sampled)] if kind == SAMPLED else 0.0

    def take(self, kind: int, char: str, p: float) -> None:
        """Append the char a step picked for one of this job's rows; close the row at its end."""
        with self.lock:
            if kind == GREEDY:
                self.out.greedy += char
                n = len(self.out.greedy)
            else:
                self.out.sampled += char
                self.out.probs.append(p)
                n = len(self.out.sampled)
            if char in self.stops or n >= self.settings.length:
                self.growing[kind] = False

    def stopped_by_rule(self) -> bool:
        """Whether a row ended at its stop rule (a sentence or paragraph end) before its length."""
        return any(text and text[-1] in self.stops and len(text) < self.settings.length
                   for text in (self.out.greedy, self.out.sampled))

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    def snapshot(self, top: int = 10) -> Output:
        """A copy of the Output so far, with the likeliest chars to follow the sampled text."""
        with self.lock:
            out = replace(self.out, probs=list(self.out.probs), notices=list(self.out.notices),
                          finished=self.finished)
            end_probs = self.end_probs
        if end_probs is not None:
            out.candidates = top_chars(self.model, end_probs, top)
        return out


class Batch:
    """The rows of every active job, stepped together: one model step per char for all of them.
    Jobs join with add() (prefilled first) and leave as soon as their rows close."""

    def __init__(self, model: CharRNN):
        self.model, self.step_fn = model, make_step(model)
        self.device = next(model.parameters()).device
        self.rows: list[tuple[Job, int]] = []  # (job, GREEDY or SAMPLED) per row
        self.logits = None  # (B, V) each row's next-char logits
        self.layers = None  # per layer (h, c) or h, each (B, H)
        self.temperature = self.top_k = self.top_p = None  # (B,) each
        self.filtered = False  # whether any row uses top-k or top-p

    @torch.inference_mode()
    def add(self, job: Job) -> None:
        """Append the job's greedy and sampled rows, prefilling first if job.prefill() has not run."""
        logits, layers = job.prefill()  # (1, V), per layer (1, H)
        logits = logits.expand(2, -1)  # (2, V): both rows start from the seed
        layers = _map(layers, lambda t: t.expand(2, -1))  # (2, H) each: both rows from the seed's state
        temperature, top_k, top_p = (torch.tensor(v, device=self.device) for v in job.row_settings())
        job.end_probs = logits[SAMPLED].float().softmax(-1)
        if not self.rows:
            self.logits, self.layers = logits.contiguous(), _map(layers, torch.Tensor.contiguous)
            self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        else:
            self.logits = torch.cat([self.logits, logits])
            self.layers = [_zip_map(torch.cat, a, b) for a, b in zip(self.layers, layers)]
            self.temperature = torch.cat([self.temperature, temperature])
            self.top_k, self.top_p = torch.cat([self.top_k, top_k]), torch.cat([self.top_p, top_p])
        self.rows += [(job, GREEDY), (job, SAMPLED)]
        self.filtered = self._any_filtered()

    @torch.inference_mode()
    def step(self) -> list[Job]:
        """One char for every row; returns the jobs whose rows all ended (now finished and gone)."""
        if not self.rows:
            return []
        draw = torch.tensor([job.draw(kind) for job, kind in self.rows], device=self.device)  # (B,)
        ids = pick(self.logits, self.temperature, self.top_k, self.top_p, draw, self.filtered)  # (B,)
        p = self.logits.float().softmax(-1).gather(1, ids[:, None])[:, 0]  # (B,) at temperature 1
        chars = self.model.vocab.chars
        for (job, kind), i, q in zip(self.rows, ids.tolist(), p.tolist()):  # the chars go to the host:
            job.take(kind, chars[i], q)  # to stop, and to stream text
        # Also after a row's last char: its distribution gives the next-char candidates.
        self.logits, self.layers = self.step_fn(ids, self.layers)  # (B, V)
        probs = self.logits.float().softmax(-1)  # (B, V)
        ended = []
        for row, (job, kind) in enumerate(self.rows):
            if kind == SAMPLED:
                job.end_probs = probs[row]
            if not any(job.growing) and job not in ended:
                ended.append(job)
        for job in ended:
            job.finish()
        self._keep([job.growing[kind] for job, kind in self.rows])
        return ended

    @torch.inference_mode()
    def remove(self, jobs: list[Job]) -> None:
        """Drop these jobs' rows (their requests were cancelled): the other rows are untouched."""
        gone = set(jobs)
        self._keep([job not in gone for job, _ in self.rows])

    def _keep(self, keep: list[bool]) -> None:
        """Drop the rows whose flag is False."""
        if all(keep):
            return
        index = torch.tensor([i for i, k in enumerate(keep) if k], device=self.device, dtype=torch.long)
        self.rows = [r for r, k in zip(self.rows, keep) if k]
        self.logits = self.logits.index_select(0, index)
        self.layers = _map(self.layers, lambda t: t.index_select(0, index))
        self.temperature, self.top_k, self.top_p = (t.index_select(0, index)
                                                    for t in (self.temperature, self.top_k, self.top_p))
        self.filtered = self._any_filtered()

    def _any_filtered(self) -> bool:
        """Whether any row samples with top-k or top-p (without, pick() skips the sort they need)."""
        return any(j.settings.top_k or j.settings.top_p < 1 for j, _ in self.rows)


def _map(layers: list, f) -> list:
    """f applied to every state tensor of every layer: (h, c) pairs for LSTM, h for GRU."""
    return [tuple(f(t) for t in s) if isinstance(s, tuple) else f(s) for s in layers]


def _zip_map(f, a, b):
    """f(a, b) on one layer's state, pair by pair for LSTM."""
    return tuple(f([x, y]) for x, y in zip(a, b)) if isinstance(a, tuple) else f([a, b])


# ---------------------------------------------------------------------------------------- one request

def stream(model: CharRNN, seed_text: str, settings: Settings = Settings(), every: int = 1,
           interval: float = 0.0, top: int = 10) -> Iterator[Output]:
    """Yield the growing greedy and sampled continuations, and once more when finished: one
    request alone, in a batch of its own two rows, stepped in the caller's thread.

    A partial result is yielded after a char once `every` chars and `interval` seconds have
    passed since the last one; with every=1 the first char comes out at once, so a page shows
    something immediately, and `interval` keeps a fast model from flooding it with updates.
    Each result carries the `top` likeliest chars to follow the sampled text."""
    job = Job(model, seed_text, settings)  # validates the settings: a ValueError says which one
    batch = Batch(model)
    batch.add(job)
    since, last_yield = 0, float("-inf")
    while not batch.step():
        since += 1
        if since >= every and time.perf_counter() - last_yield >= interval:
            yield job.snapshot(top)
            since, last_yield = 0, time.perf_counter()
    yield job.snapshot(top)


def complete(model: CharRNN, seed_text: str, settings: Settings = Settings()) -> Output:
    """The finished continuations, without streaming."""
    for out in stream(model, seed_text, settings, every=MAX_LENGTH + 1):
        pass
    return out
