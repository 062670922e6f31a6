"""What the page shows, as plain values: an Output or a Reading turned into spans, HTML and
Markdown. No gradio here, so every view is testable without a browser or a server."""
import html
import math
from pathlib import Path

from charrnn.generate import Output
from charrnn.hub import card_metrics
from charrnn.model import CharRNN

# How surprising each sampled char was: the model's probability of it, at temperature 1.
SURPRISE = [(0.5, None), (0.2, "plausible (20–50%)"), (0.05, "surprising (5–20%)"), (0.0, "very surprising (<5%)")]
COLORS = {"your seed": "#e5e7eb", "plausible (20–50%)": "#fde68a", "surprising (5–20%)": "#fdba74",
          "very surprising (<5%)": "#f87171"}
SHOWN_CHARS = {" ": "␣ (space)", "\n": "⏎ (new line)"}
SURPRISE_BITS = [(10, "#ef4444"), (6, "#f97316"), (3, "#fcd34d"), (1, "#fef3c7")]  # bits: colour from this many up


def surprise_spans(out: Output) -> list[tuple[str, str | None]]:
    """The seed, then the sampled text in runs of chars with the same surprise category."""
    spans = [(out.seed, "your seed")]
    for char, p in zip(out.sampled, out.probs):
        label = next(name for floor, name in SURPRISE if p >= floor)
        if spans[-1][1] == label:
            spans[-1] = (spans[-1][0] + char, label)
        else:
            spans.append((char, label))
    return spans


def candidates(out: Output) -> dict[str, float]:
    return {SHOWN_CHARS.get(c, c): p for c, p in out.candidates}


def info(out: Output, seconds: float) -> str:
    lines = [f"⚠️ {n}" for n in out.notices]
    if out.finished:
        lines.append(f"{len(out.greedy)} greedy + {len(out.sampled)} sampled characters in {seconds:.2f} s · "
                     f"sampling seed **{out.sampling_seed}** (enter it under *Advanced* to get this text again)")
    else:
        lines.append("Generating…")
    return "\n\n".join(lines)


def about(model: CharRNN, source: str) -> str:
    """Model summary, the validation metrics from the model card's data (read offline), and a link."""
    rnn = model.rnn
    text = "accent-free (the tutorials' setting)" if model.vocab.strip_accents else "accents, ñ, ¿ and ¡ kept"
    lines = [f"**Model:** {model.cell.upper()}, {rnn.num_layers} layer{'s' * (rnn.num_layers > 1)} × {rnn.hidden_size} units, "
             f"{model.num_params():,} parameters, {len(model.vocab)}-character vocabulary ({text})."]
    metrics = card_metrics(source)
    if metrics is not None:
        lines.append(f"**Validation loss** (from the model card): **{metrics.nats_per_char:.4f} nats/char** "
                     f"({metrics.bits_per_char:.4f} bits/char) on `{metrics.dataset}`, {metrics.split}.")
    if Path(source).exists():
        lines.append(f"**Weights:** `{source}` (config.json + model.safetensors, model card in README.md).")
    else:
        lines.append(f"**Weights:** [{source}](https://huggingface.co/{source}) on the Hugging Face Hub.")
    lines.append("Greedy picks the likeliest character at every step; sampled draws from the model's "
                 "distribution, sharpened or flattened by the temperature and cut by top-k / top-p.")
    return "\n\n".join(lines)


def spans_html(chars: str, styles: list[str], title: str) -> str:
    """chars as HTML, each run of chars with the same style in one span; line breaks kept (pre-wrap)."""
    out, i = [], 0
    while i < len(chars):
        j = i
        while j < len(chars) and styles[j] == styles[i]:
            j += 1
        text = html.escape(chars[i:j])
        out.append(f'<span style="{styles[i]}">{text}</span>' if styles[i] else text)
        i = j
    return (f'<div aria-label="{title}" style="white-space: pre-wrap; line-height: 1.7; font-size: 1.05em">'
            f'{"".join(out)}</div>')


def surprise_style(lp) -> str:
    if lp is None:
        return "color: #9ca3af; text-decoration: line-through"
    bits = -lp / math.log(2)
    return next((f"background-color: {c}" for floor, c in SURPRISE_BITS if bits >= floor), "")


def activation_style(v: float) -> str:
    v = round(v, 1)  # 21 shades: runs of similar values share a span
    if v == 0:
        return ""
    return f"background-color: rgba({'239, 68, 68' if v > 0 else '59, 130, 246'}, {abs(v):.1f})"
