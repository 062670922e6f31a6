"""What the page shows, as plain values: an Output or a Reading turned into spans, HTML and
Markdown. No gradio here, so every view is testable without a browser or a server."""
import html
import math
from pathlib import Path

from charrnn.corpus_profile import CorpusProfile
from charrnn.generate import Output
from charrnn.hub import card_metrics, corpus_of
from charrnn.model import CharRNN
from charrnn.snapshots import Snapshot
from charrnn.style import Adaptation

# One scale of surprise for both tabs: the probability the model gave a char (at temperature 1),
# in bits (-log2 p). A char is coloured from this many bits up; under 1 bit (p over 50%) it is not.
SURPRISE = [(6.0, "very surprising (under 1.6%)", "#f87171"), (3.0, "surprising (1.6–12.5%)", "#fdba74"),
            (1.0, "plausible (12.5–50%)", "#fde68a")]
SEED_LABEL, UNKNOWN_LABEL = "your seed", "not in the model's vocabulary: skipped"
COLORS = {SEED_LABEL: "#e5e7eb", **{label: colour for _, label, colour in SURPRISE}}
UNKNOWN_STYLE = "color: #9ca3af; text-decoration: line-through"
SHOWN_CHARS = {" ": "␣ (space)", "\n": "⏎ (new line)"}


def surprise_label(logprob: float) -> str | None:
    """The scale's label for a char the model gave log-probability `logprob` (natural log), or None."""
    bits = -logprob / math.log(2)
    return next((label for floor, label, _ in SURPRISE if bits >= floor), None)


def legend_html(extra: tuple[str, ...] = ()) -> str:
    """The one legend of the surprise scale, with `extra` entries (SEED_LABEL, UNKNOWN_LABEL) after it."""
    def item(label: str, style: str) -> str:
        css = f"{style + '; ' if style else ''}padding: 0 0.35em; margin-right: 0.6em"
        return f'<span style="{css}">{html.escape(label)}</span>'
    items = [item("expected (over 50%)", "")]
    items += [item(label, f"background-color: {colour}") for _, label, colour in reversed(SURPRISE)]
    items += [item(label, UNKNOWN_STYLE if label == UNKNOWN_LABEL else f"background-color: {COLORS[label]}")
              for label in extra]
    return (f'<div class="surprise-legend" style="font-size: 0.9em">How surprising each character was to the '
            f'model: {"".join(items)}</div>')


def surprise_html(out: Output) -> str:
    """The seed, then the sampled text, each sampled char coloured by the surprise scale: the same
    renderer as the Read tab's, so both tabs show surprise alike (and words never break across
    lines, as Gradio's HighlightedText broke them)."""
    styles = [f"background-color: {COLORS[SEED_LABEL]}"] * len(out.seed)
    styles += [surprise_style(math.log(p) if p > 0 else -math.inf) for p in out.probs[:len(out.sampled)]]
    return spans_html(out.seed + out.sampled, styles, "sampled text coloured by surprise")


def candidates(out: Output) -> dict[str, float]:
    return {SHOWN_CHARS.get(c, c): p for c, p in out.candidates}


def info(out: Output, seconds: float) -> str:
    lines = [f"⚠️ {n}" for n in out.notices]
    if out.finished:
        lines.append(f"{len(out.greedy)} greedy + {len(out.sampled)} sampled characters in {seconds:.2f} s · "
                     f"sampling seed **{out.sampling_seed}** (enter it under *Advanced* to get this text "
                     "again)")
    else:
        lines.append("Generating…")
    return "\n\n".join(lines)


def intro(corpus: CorpusProfile) -> str:
    """The page's title and first lines, about the model's own corpus."""
    trained = f", trained on {corpus.description}," if corpus.description else ""
    return (f"# charrnn: *{corpus.title}*, one character at a time\n"
            f"Type the beginning of a sentence and watch a character-level recurrent network{trained} "
            "continue it: the **greedy** text takes the likeliest character at every step, the **sampled** "
            "one draws it at random from the model's prediction.")


def placeholder(corpus: CorpusProfile) -> str:
    """The seed box's hint: the start of the corpus's first seed."""
    return corpus.seeds[0][:24].rstrip() + "…" if corpus.seeds else ""


def shown_vocabulary(chars: str) -> str:
    """The vocabulary as it is, every char visible: space and line break named."""
    return " ".join(SHOWN_CHARS.get(c, c).split(" (")[0] for c in chars)


def about(model: CharRNN, source: str, corpus: CorpusProfile | None = None) -> str:
    """Model summary, the corpus (default: the one `source` records), the validation metrics from the
    model card's data (read offline), the vocabulary as it is, and a link."""
    corpus = corpus or corpus_of(source)
    rnn = model.rnn
    text = "accent-free (the tutorials' setting)" if model.vocab.strip_accents else "NFC-normalized"
    lines = [f"**Model:** {model.cell.upper()}, {rnn.num_layers} layer{'s' * (rnn.num_layers > 1)} × "
             f"{rnn.hidden_size} units, {model.num_params():,} parameters, {len(model.vocab)}-character "
             f"vocabulary ({text} text)."]
    language = f", language `{corpus.language}`" if corpus.language_name else ""
    lines.append(f"**Trained on:** {corpus.description or corpus.name} (`{corpus.name}`{language}).")
    metrics = card_metrics(source)
    if metrics is not None:
        lines.append(f"**Validation loss** (from the model card): **{metrics.nats_per_char:.4f} nats/char** "
                     f"({metrics.bits_per_char:.4f} bits/char) on `{metrics.dataset}`, {metrics.split}.")
    lines.append(f"**Vocabulary:** `` {shown_vocabulary(model.vocab.chars)} ``")
    if Path(source).exists():
        lines.append(f"**Weights:** `{source}` (config.json + model.safetensors, model card in README.md, "
                     "corpus.json).")
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


def surprise_style(lp: float | None) -> str:
    """The style of a read char: the scale's colour for its log-probability; for None (a char the
    vocabulary lacks, skipped) struck through; "" below the scale."""
    if lp is None:
        return UNKNOWN_STYLE
    label = surprise_label(lp)
    return f"background-color: {COLORS[label]}" if label else ""


def reading_styles(text: str, logprobs: list[float | None], known: set[str]) -> list[str]:
    """A style per char of a Reading: unknown chars struck through; the first known char, which
    has no prediction, plain; the others by the surprise scale."""
    first = next((i for i, c in enumerate(text) if c in known), None)
    return ["" if i == first else surprise_style(lp) if c in known else UNKNOWN_STYLE
            for i, (c, lp) in enumerate(zip(text, logprobs))]


def read_totals(summary: dict, adapt: bool, reference: str | None, notices: list[str], unknown) -> str:
    """The Read tab's Markdown: totals, the model's own validation score when its card has one,
    what was replaced, and what was skipped."""
    line = (f"**{summary['nats_per_char']:.3f} nats/char** ({summary['bits_per_char']:.3f} bits/char) over "
            f"{summary['chars']:,} characters, {'adapting as it read' if adapt else 'static weights'}")
    lines = [line + (f"; {reference}" if reference else "") + "."]
    lines += [f"⚠️ {n}" for n in notices]
    if unknown:
        shown = ", ".join(f"`{c!r}` ×{n}" for c, n in unknown.most_common(8))
        n = sum(unknown.values())
        lines.append(f"⚠️ {n} character{'s' * (n != 1)} the model does not know "
                     f"{'were' if n != 1 else 'was'} skipped (struck through): {shown}.")
    return "\n\n".join(lines)


def card_reference(metrics) -> str | None:
    """The model's own validation score from its model card (charrnn.hub.card_metrics), named as
    such, to compare a reading with; None without one."""
    if metrics is None:
        return None
    return (f"the model's validation score from its model card: {metrics.nats_per_char:.4f} nats/char "
            f"on `{metrics.dataset}`, {metrics.split}")


def activation_style(v: float) -> str:
    """The background of a char by one unit's value there (-1..1): red where positive, blue where negative."""
    v = round(v, 1)  # 21 shades: runs of similar values share a span
    if v == 0:
        return ""
    return f"background-color: rgba({'239, 68, 68' if v > 0 else '59, 130, 246'}, {abs(v):.1f})"


# ------------------------------------------------------------------------- watch it learn, write like this

NO_SNAPSHOTS = ("This model has no snapshots of its training, so there is nothing to watch: runs of "
                "`python train.py` keep a few (`--snapshots`, by default after 100 and 500 steps, the first "
                "epoch, half the run and the best), and the shipped weights were trained before that.")


def snapshots_note(snapshots: list[Snapshot]) -> str:
    """The sentence above the Watch it learn tab: what there is to watch, or that there is nothing."""
    if not snapshots:
        return NO_SNAPSHOTS
    steps = ", ".join(f"{s.step:,}" for s in snapshots)
    return (f"{len(snapshots)} snapshots of this model as it trained, after {steps} steps: each writes from "
            "the same seed with the same sampling seed, so what changes is only what it had learned.")


def watch_rows(snapshots: list[Snapshot], outs: list[Output | None]) -> list[dict]:
    """Each snapshot's facts and texts so far, as the /watch endpoint returns them."""
    return [{"step": s.step, "epoch": s.epoch, "minutes": s.minutes, "val_loss": s.val_loss,
             "moments": list(s.moments), "greedy": "" if out is None else out.greedy,
             "sampled": "" if out is None else out.sampled} for s, out in zip(snapshots, outs)]


def watch_html(snapshots: list[Snapshot], outs: list[Output | None]) -> str:
    """The snapshots side by side, earliest first: each one's step, time and loss, then its greedy and
    sampled continuations (the seed in grey)."""
    cards = []
    for s, out in zip(snapshots, outs):
        seed = html.escape(out.seed) if out is not None else ""
        texts = "".join(
            f'<div class="{kind}"><b>{kind}</b><div style="white-space: pre-wrap; overflow-wrap: anywhere">'
            f'<span style="color: #9ca3af">{seed}</span>{html.escape(getattr(out, kind) if out else "")}'
            '</div></div>' for kind in ("greedy", "sampled"))
        cards.append(f'<div class="snapshot" data-step="{s.step}" style="border: 1px solid #d1d5db; '
                     f'border-radius: 8px; padding: 8px"><div class="label"><b>{html.escape(s.label())}</b>'
                     f'</div>{texts}</div>')
    grid = "display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px"
    return f'<div style="{grid}">{"".join(cards)}</div>'


def adaptation(how: Adaptation | None, out: Output | None = None) -> str:
    """How much the model adapted to the pasted passage, and the generation's state."""
    if how is None:
        return "Reading the passage, adapting as it reads…"
    lines = [f"Reading the passage ({how.chars:,} characters), the model went from **{how.start:.3f} "
             f"nats/char** on its first {how.window:,} characters to **{how.end:.3f}** on its last "
             f"{how.window:,}; the unadapted model reads those last ones at {how.end_unadapted:.3f}, so it "
             f"adapted by **{how.gain:+.3f} nats/char**."]
    if how.unknown_chars:
        lines.append(f"⚠️ {how.unknown_chars:,} character(s) of the passage the model does not know were "
                     "skipped.")
    if out is not None:
        lines += [f"⚠️ {n}" for n in out.notices]
        lines.append(f"Written by the adapted copy · sampling seed **{out.sampling_seed}**" if out.finished
                     else "Writing…")
    return "\n\n".join(lines)
