"""Look inside the network: every unit's activation over a text, and the units that track features
of the text (as Karpathy, Johnson and Fei-Fei found units for quotes and line length, 2015).

A unit is one number of the network's state: one entry of some layer's c or h. Units are numbered
across layers. An LSTM has 2 x layers x hidden units: first the memories c (what PyTorch calls
the LSTM's cell state; layer 1's entries, then layer 2's, ...), then the hidden states h in the
same order. A GRU has only h: layers x hidden units.
"""
import re
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from .model import CharRNN

TOP = 5  # units listed per feature
TICK_EVERY = 512  # chars between progress ticks (see charrnn.reading)
LETTER = re.compile(r"[^\W\d_]")
DASHES = "–-—"  # dialogue turns open with a dash in the novel (a hyphen or an en dash) and in modern Spanish
SENTENCE_ENDS = ".!?…。！？"
QUOTES = {'"': '"', "“": "”", "«": "»", "„": "“", "「": "」", "『": "』"}  # opening -> closing
BRACKETS = {"(": ")", "[": "]", "{": "}", "（": "）"}

# Features any text can have (after Karpathy, Johnson and Fei-Fei, 2015), then the novel's dialogue
# features, which only texts written that way have: a feature the ranked text never shows is left out.
FEATURES = {
    "word_position": "position in the word",
    "line_position": "position in the line",
    "after_sentence_end": "right after a sentence end",
    "capitalised": "in a capitalised word",
    "quoted": "inside quotes",
    "bracketed": "inside brackets or parentheses",
    "digit": "a digit",
    "dialogue": "inside a dialogue turn opened by a dash",
    "question": "inside ¿…? or ¡…!",
}


def _dialogue_turns(text: str) -> bool:
    """Whether the text writes dialogue as the novel does: lines that open with a dash."""
    return any(line[:1] in DASHES and line[:1] for line in text.split("\n"))


def _step(state: dict, text: str, i: int) -> dict:
    """The features after reading text[i], from those after text[i - 1]."""
    ch, s = text[i], dict(state)
    at_line_start = i == 0 or text[i - 1] == "\n"
    is_letter = bool(LETTER.match(ch))
    s["line_position"] = 0 if at_line_start else s["line_position"] + 1
    s["word_position"] = s["word_position"] + 1 if is_letter else 0
    s["capitalised"] = (ch.isupper() if s["word_position"] == 1 else s["capitalised"]) if is_letter else False
    s["after_sentence_end"] = True if ch in SENTENCE_ENDS else False if is_letter else s["after_sentence_end"]
    if s["quote"] and ch == QUOTES[s["quote"]]:
        s["quote"] = None
    elif not s["quote"] and ch in QUOTES:
        s["quote"] = ch
    s["depth"] = s["depth"] + (ch in BRACKETS) - (ch in BRACKETS.values() and s["depth"] > 0)
    s["digit"] = ch.isdigit()
    if ch == "\n":
        s["dialogue"] = False
    elif ch in DASHES:  # a dash at the start of a line opens a turn; inside a line, dashes frame the narrator
        s["dialogue"] = True if at_line_start else not s["dialogue"]
    s["question"] = True if ch in "¿¡" else False if ch in "?!" else s["question"]
    return s


def features(text: str) -> dict[str, torch.Tensor]:
    """Each feature's value at every char of `text` (the state after reading that char), for the
    features this text shows at all (never constant): the novel's dialogue features only where the
    text writes dialogue that way. # (T,) each"""
    state = dict(line_position=0, word_position=0, capitalised=False, after_sentence_end=False, quote=None,
                 depth=0, digit=False, dialogue=False, question=False)
    values = {name: [] for name in FEATURES}
    for i in range(len(text)):
        state = _step(state, text, i)
        shown = {**state, "quoted": state["quote"] is not None, "bracketed": state["depth"] > 0}
        for name in FEATURES:
            values[name].append(float(shown[name]))
    if not _dialogue_turns(text):
        values.pop("dialogue")
    return {name: torch.tensor(v) for name, v in values.items() if len(set(v)) > 1}


def num_units(model: CharRNN) -> int:
    """How many units Look inside numbers: every entry of every layer's c (LSTM only) and h."""
    rnn = model.rnn
    return (2 if model.cell == "lstm" else 1) * rnn.num_layers * rnn.hidden_size


def unit_name(model: CharRNN, n: int) -> str:
    """'layer 2 c 137': which layer, which state and which entry of it unit number n is."""
    per_kind = model.rnn.num_layers * model.rnn.hidden_size
    kind = "h" if model.cell == "gru" or n >= per_kind else "c"
    layer, entry = divmod(n % per_kind, model.rnn.hidden_size)
    return f"layer {layer + 1} {kind} {entry}"


def _memories(layer: nn.LSTM, x: torch.Tensor, h: torch.Tensor, tick: Callable[[int], None]) -> torch.Tensor:
    """An LSTM layer's memory c (its cell state) at every step, from its input x and output h. # (T, H)
    The gates are computed for all steps at once; only c_t = f_t c_(t-1) + i_t g_t is a loop,
    which calls tick(steps done) every TICK_EVERY steps."""
    h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])  # (T, H)
    gates = x @ layer.weight_ih_l0.T + layer.bias_ih_l0 + h_prev @ layer.weight_hh_l0.T + layer.bias_hh_l0
    i, f, g, _ = gates.chunk(4, dim=1)  # PyTorch's gate order: input, forget, cell, output
    f, ig = torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(g)
    c, out = torch.zeros_like(h[0]), []
    for t in range(len(h)):
        c = torch.addcmul(ig[t], f[t], c)
        out.append(c)
        if (t + 1) % TICK_EVERY == 0:
            tick(t + 1)
    return torch.stack(out)


@torch.no_grad()
def activations(model: CharRNN, ids: torch.Tensor,
                tick: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Every unit's value after each char of `ids` (1-D), from a zero state, numbered as
    unit_name() says. # (T, num_units) on the CPU. tick(chars_read, total) is told the progress (in
    char-steps over all layers); an exception it raises stops the work."""
    device = next(model.parameters()).device
    x = model.embed(ids.to(device)[None])[0]  # (T, E); no dropout: read as the model reads in eval mode
    layers, T = model.rnn.num_layers, len(ids)
    hs, cs = [], []
    for k in range(layers):
        told = (lambda steps, k=k: tick(k * T + steps, layers * T)) if tick else (lambda steps: None)
        layer = model.rnn_layers(k, k + 1)
        h = layer(x[None])[0][0]  # (T, H)
        if model.cell == "lstm":
            cs.append(_memories(layer, x, h, told))
        hs.append(h)
        told(T)
        x = h
    return torch.cat(cs + hs, dim=1).float().cpu()


def correlations(acts: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each unit (column of acts, (T, U)) with each feature (column of
    feats, (T, F)) -> (F, U); 0 where a unit or a feature is constant over the text."""
    def standardized(m):
        m = m - m.mean(0)
        norm = m.norm(dim=0)
        return torch.where(norm > 0, m / norm.clamp_min(1e-12), torch.zeros(()))
    return standardized(feats).T @ standardized(acts)


def _ranked(model: CharRNN, acts: torch.Tensor, text: str, top: int) -> list[dict]:
    """The `top` units per feature of `text` (its chars all known), from their activations (T, U)."""
    feats = features(text)
    if not feats:  # a text too short or too plain to show any feature
        return []
    rows = []
    for name, r in zip(feats, correlations(acts, torch.stack(list(feats.values()), dim=1))):
        for n in r.abs().argsort(descending=True)[:top].tolist():
            rows.append({"feature": FEATURES[name], "unit": n, "name": unit_name(model, n),
                         "correlation": round(float(r[n]), 3)})
    return rows


def _known(model: CharRNN, text: str) -> tuple[str, list[bool], torch.Tensor]:
    """`text` normalized, which of its chars the model knows, and their ids (1-D, int64).
    ValueError if it knows none."""
    text = model.vocab.normalize(text)
    known = [c in model.vocab.stoi for c in text]
    if not any(known):
        raise ValueError("the text has no character the model knows")
    return text, known, torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)


def _scaled(values: torch.Tensor, known: list[bool]) -> list[float | None]:
    """One unit's values (T,) scaled to -1..1 by their largest magnitude, None at unknown chars."""
    scaled = iter((values / values.abs().max().clamp_min(1e-6)).tolist())
    return [next(scaled) if k else None for k in known]


def rank_units(model: CharRNN, text: str, top: int = TOP) -> list[dict]:
    """For each feature, the `top` units whose activation correlates most (in absolute value) with it
    over `text`: [{"feature", "unit", "name", "correlation"}]. ValueError if no char is known."""
    text, known, ids = _known(model, text)
    return _ranked(model, activations(model, ids), "".join(c for c, k in zip(text, known) if k), top)


def unit_trace(model: CharRNN, text: str, unit: int) -> tuple[str, list[float | None]]:
    """`text` as the model reads it (normalized) and one unit's value after each of its chars,
    scaled to -1..1 by its largest magnitude on this text; None for chars the model does not know
    (they are skipped). ValueError if the text has no char the model knows."""
    text, known, ids = _known(model, text)
    return text, _scaled(activations(model, ids)[:, unit], known)


# model -> {passages: rows}
_RANKINGS: "weakref.WeakKeyDictionary[CharRNN, dict]" = weakref.WeakKeyDictionary()


def passage_ranking(model: CharRNN, passages: tuple[str, ...]) -> list[dict]:
    """rank_units on the corpus's own passages (its corpus.json), computed once per model and kept
    with it (gone when the model is)."""
    kept = _RANKINGS.setdefault(model, {})
    if passages not in kept:
        kept[passages] = rank_units(model, "\n\n".join(passages))
    return kept[passages]


@dataclass
class Look:
    """A text seen through one unit: what the Look inside tab shows."""
    text: str  # normalized, as the model reads it
    values: list[float | None]  # the unit after each char, scaled to -1..1; None where the char is unknown
    ranking: list[dict]  # the units that best track the features (rank_units' rows) ...
    ranked_on: str  # ... of this text, or of the passages of the model's own corpus


def look(model: CharRNN, text: str, unit: int, tick: Callable[[int, int], None] | None = None,
         top: int = TOP, passages: tuple[str, ...] = ()) -> Look:
    """unit_trace from one pass of the network, and the units ranked on the corpus's own `passages`
    (once per model: passage_ranking) or, for a model without any, on this text from the same pass.
    It needs nothing but the text. ValueError if the text has no char the model knows."""
    text, known, ids = _known(model, text)
    acts = activations(model, ids, tick)  # (T, U)
    if passages:
        return Look(text, _scaled(acts[:, unit], known), passage_ranking(model, tuple(passages)),
                    "passages of the model's own corpus")
    read = "".join(c for c, k in zip(text, known) if k)
    return Look(text, _scaled(acts[:, unit], known), _ranked(model, acts, read, top), "this text")
