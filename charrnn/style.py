"""Write like a text: the model reads a pasted passage adapting as it reads (dynamic evaluation:
the Read tab's adaptive reader, charrnn.adaptive, on a copy of the model), then continues a seed
with that adapted copy, greedy and sampled, through the same generation as the main page
(charrnn.generate.stream). The model passed in, the one a page serves, never changes.

How much it adapted is measured on the passage itself: its nats/char over the first and the last
chars read adapting, and the unadapted model's over those same last chars (read with the state
carried from the start of the passage, as the adaptive reader reads them).
"""
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

from .adaptive import Adapt
from .generate import Output, Settings, stream
from .model import CharRNN
from .text_reading import read

WINDOW = 1000  # chars at each end of the passage that "start" and "end" measure (a quarter of a short one)
# The Read tab's dynamic evaluation, learning 4x faster: after 2,000 chars of a letter, a news report
# and an English story it reads their next 2,000 chars 0.07, 0.33 and 2.6 nats/char better than the
# unadapted model (the Read tab's lr 5e-4: 0.04, 0.14, 1.4), and it writes visibly otherwise; on the
# novel itself 0.013 better (5e-4: 0.019). bench/style.py, bench/RESULTS.md.
ADAPT = Adapt(lr=2e-3)


@dataclass(frozen=True)
class Adaptation:
    """How the model read a passage as it adapted to it (nats per char)."""
    chars: int  # chars the model read (those it knows)
    window: int  # chars measured at each end
    start: float  # over the first `window` chars, adapting (it has barely started)
    end: float  # over the last `window` chars, adapting
    end_unadapted: float  # the trained model over those same last chars
    passage: float  # over the whole passage, adapting
    passage_unadapted: float  # the trained model over the whole passage
    unknown_chars: int  # chars of the passage the model does not know, skipped

    @property
    def gain(self) -> float:
        """nats/char the adapted reading saved on the passage's last chars."""
        return self.end_unadapted - self.end

    def summary(self) -> dict:
        values = {**asdict(self), "gain": self.gain}
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}


def read_passage(model: CharRNN, passage: str, adapt: Adapt = ADAPT,
                 tick: Callable[[int, int], None] | None = None) -> tuple[CharRNN, Adaptation]:
    """The model adapted to `passage` (a copy) and how it read it; chars the model lacks are mapped
    to close ones as the Read tab maps them ('—' -> '–'), or skipped. `tick(chars_read, total)` follows
    both readings, as charrnn.reading wants it. ValueError when the passage has fewer than 2 chars
    the model knows."""
    passage, _ = model.vocab.map_unknown(passage)
    first, second = _one_after_the_other(tick)
    adaptive = read(model, passage, adapt, keep_adapted=True, tick=first)
    static = read(model, passage, tick=second)
    got, base = adaptive.score.logprobs, static.score.logprobs  # (N-1,) each, the same chars
    n = len(got)
    window = max(1, min(WINDOW, n // 4))

    def mean(lps) -> float:
        return -float(lps.mean())

    adaptation = Adaptation(chars=adaptive.score.chars, window=window, start=mean(got[:window]),
                            end=mean(got[-window:]), end_unadapted=mean(base[-window:]), passage=mean(got),
                            passage_unadapted=mean(base), unknown_chars=sum(adaptive.unknown.values()))
    return adaptive.score.adapted, adaptation


def _one_after_the_other(tick):
    """Two ticks for two readings of the same text, one after the other, counted as one: the first
    reports the first half of the work, the second the rest."""
    if tick is None:
        return None, None
    return (lambda read, total: tick(read, 2 * total)), (lambda read, total: tick(total + read, 2 * total))


def write_like(model: CharRNN, passage: str, seed_text: str, settings: Settings = Settings(),
               adapt: Adapt = ADAPT, every: int = 1, interval: float = 0.0
               ) -> Iterator[tuple[Adaptation, Output]]:
    """Read `passage` adapting (on a copy), then stream the continuation of `seed_text` in its
    style: (how it adapted, the growing greedy and sampled Output), as generate.stream yields them.
    The settings are checked before the passage is read (SettingsError); a passage without 2
    known chars is a ValueError."""
    settings = settings.validated()
    adapted, adaptation = read_passage(model, passage, adapt)
    for out in stream(adapted, seed_text, settings, every=every, interval=interval):
        yield adaptation, out
