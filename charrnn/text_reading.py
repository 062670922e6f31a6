"""A text as a user gives it, read by the model: the Read tab's and Write like this's reading.

`read` normalizes the text as the model does, skips and counts the chars it does not know, scores
the rest (charrnn.score.score, static or adaptive) and puts each char's log-probability back at
its place in the text, so the page can colour every char and name the words that surprised it.
"""
import math
import re
from collections import Counter
from dataclasses import dataclass

import torch

from .adaptive import Adapt
from .model import CharRNN
from .score import Score, Tick, score

WORD = re.compile(r"[^\W\d_]+")  # runs of letters, accented ones included


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
         tick: Tick | None = None) -> Reading:
    """Score a text the way a user pastes it: normalized, unknown chars skipped and counted
    (keep_adapted: see score). `tick(chars_read, total)` is called after each piece, as score() does."""
    text = model.vocab.normalize(text)
    unknown = model.vocab.unknown(text)
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    if len(ids) < 2:
        raise ValueError("the text needs at least 2 characters the model knows")
    result = score(model, ids, adapt, keep_adapted=keep_adapted, tick=tick)
    scored = iter([None] + result.logprobs.tolist())
    return Reading(text, [next(scored) if c in model.vocab.stoi else None for c in text], result, unknown)
