"""Score a model on a text: the log-probability it gives each char, read in order, state carried.

`score` reads token ids statically (charrnn/static.py: the weights as trained) or adaptively with
`Adapt` settings (charrnn/adaptive.py: the model learns the text as it reads it, on a copy), and
returns a Score: per-char log-probs, totals, and the JSON the CLI prints and the app's /score returns.
"""
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import adaptive, static
from .adaptive import Adapt
from .model import CharRNN

Tick = Callable[[int, int], None]  # tick(chars_read, total): chars read so far, of the text's total


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


class Progress:
    """A progress bar that also tells `tick(chars_read, total)` after each piece read (charrnn.reading)."""

    def __init__(self, bar, total: int, tick: Tick | None):
        # (kept here: a disabled tqdm counts nothing)
        self.bar, self.total, self.tick, self.chars_read = bar, total, tick, 0

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.chars_read += n
        if self.tick is not None:
            self.tick(self.chars_read, self.total)


def score(model: CharRNN, ids: torch.Tensor, adapt: Adapt | None = None, progress: bool = False,
          prior: torch.Tensor | None = None, keep_adapted: bool = False, tick: Tick | None = None) -> Score:
    """Score `ids` (1-D token ids, at least 2) statically, or adaptively with `adapt` settings.
    With `adapt.mix`, the count model starts from the counts of `prior` (1-D token ids, e.g. the
    training split; read as if just before `ids`) and learns `ids` as they are scored. With
    keep_adapted, Score.adapted is the adaptive reader's copy of the model as it ended the text
    (to write in its style: charrnn/style.py); `model` itself never changes. `progress` shows a
    bar on stderr; `tick(chars_read, total)` is called after each piece (an exception it raises stops
    the reading)."""
    if ids.dim() != 1 or len(ids) < 2:
        raise ValueError("need a 1-D sequence of at least 2 token ids to score")
    prior = torch.zeros(0, dtype=torch.long) if prior is None or adapt is None or adapt.mix is None else prior
    bar = tqdm(total=len(ids) - 1, unit="char", unit_scale=True, disable=not progress, leave=False,
               mininterval=1, desc="adaptive" if adapt else "static", file=sys.stderr)
    adapted = None
    with bar:
        told = Progress(bar, len(ids) - 1, tick)
        if adapt is None:
            logprobs = static.read(model, ids, told)
        else:
            logprobs, adapted = adaptive.read(model, ids, adapt, told, prior)
    return Score(logprobs.double().cpu(), adapt, len(prior), adapted if keep_adapted else None)
