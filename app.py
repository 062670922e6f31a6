"""The demo page: type the beginning of a sentence in Spanish and watch the model continue it,
greedy and sampled side by side, as the characters are generated.

    python app.py [--model weights | OWNER/NAME] [--device auto|cpu|cuda] [--port 7860]

Gradio Blocks only (layout, events, error messages); generation lives in charrnn.generate.
"""
import os

# Before gradio is imported: no analytics, no telemetry, no version check at start.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from charrnn.device import resolve_device  # noqa: E402
from charrnn.generate import Output, Settings, stream  # noqa: E402
from charrnn.hub import WeightsError, card_metrics, load_model  # noqa: E402
from charrnn.model import CharRNN  # noqa: E402

try:  # On a Hugging Face ZeroGPU Space each generation borrows a GPU; elsewhere this is a no-op.
    import spaces

    gpu = spaces.GPU
except ImportError:
    def gpu(fn):
        return fn

LENGTH = (50, 1000, 300)  # slider minimum, maximum, default
TEMPERATURE = (0.1, 2.0, 0.8)
TOP_P = (0.05, 1.0, 1.0)
STOP_AT = {"don't stop": None, "end of sentence": "sentence", "end of paragraph": "paragraph"}
STREAM_INTERVAL = 0.04  # s between streamed updates: smooth to the eye, light on the queue
EXAMPLES = [
    "En un lugar de la Mancha, de cuyo nombre no quiero acordarme,",
    "–Mire vuestra merced –respondió Sancho–",
    "En esto, descubrieron treinta o cuarenta molinos de viento",
    "Dijo don Quijote a su escudero:",
    "¿Qué gigantes? –dijo Sancho Panza.",
]
# How surprising each sampled char was: the model's probability of it, at temperature 1.
SURPRISE = [(0.5, None), (0.2, "plausible (20–50%)"), (0.05, "surprising (5–20%)"), (0.0, "very surprising (<5%)")]
COLORS = {"your seed": "#e5e7eb", "plausible (20–50%)": "#fde68a", "surprising (5–20%)": "#fdba74",
          "very surprising (<5%)": "#f87171"}
SHOWN_CHARS = {" ": "␣ (space)", "\n": "⏎ (new line)"}
# The coloured view reads as running text: no pill per span, gaps only where the text has them.
CSS = """
#surprise .textfield { display: block !important; font-size: 0; line-height: 1.6; }
#surprise .token-container, #surprise .token { display: inline !important; margin: 0 !important; padding: 0 !important;
  border-radius: 0 !important; font-size: 0; }
#surprise .text { font-size: var(--text-md); background-color: inherit; white-space: pre-wrap;
  margin: 0 !important; padding: 0 !important; }
"""


# ------------------------------------------------------------------------- input checks

def _number(value, name: str, lo: float, hi: float, whole: bool = False):
    """A slider or number field's raw value as a number in [lo, hi], or a gr.Error that says why."""
    shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
    kind = f"a whole number from {lo:,} to {hi:,}" if whole else f"a number from {lo:g} to {hi:g}"
    try:
        if isinstance(value, bool):
            raise ValueError
        x = float(value)  # the page sends numbers; API callers may send anything
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be {kind}, not {shown}.") from None
    if not math.isfinite(x) or not lo <= x <= hi or (whole and x != round(x)):
        raise gr.Error(f"{name} must be {kind}, not {shown}.")
    return int(round(x)) if whole else x


def _settings(length, temperature, top_k, top_p, sampling_seed, stop_at, vocab_size: int) -> Settings:
    seed = None if sampling_seed in (None, "") else _number(sampling_seed, "The sampling seed", -1, 2**31 - 1, True)
    if stop_at not in STOP_AT:
        raise gr.Error(f"'Stop at' must be one of: {', '.join(STOP_AT)}.")
    return Settings(length=_number(length, "Length", *LENGTH[:2], whole=True),
                    temperature=_number(temperature, "Temperature", *TEMPERATURE[:2]),
                    top_k=_number(top_k, "Top-k", 0, vocab_size, whole=True),
                    top_p=_number(top_p, "Top-p", *TOP_P[:2]),
                    sampling_seed=None if seed == -1 else seed, stop_at=STOP_AT[stop_at])


def _seed_text(seed) -> str:
    if seed is None:
        return ""
    if not isinstance(seed, str):
        raise gr.Error("The seed must be text.")
    return seed


# ------------------------------------------------------------------------- views of an Output

def _surprise(out: Output) -> list[tuple[str, str | None]]:
    """The seed, then the sampled text in runs of chars with the same surprise category."""
    spans = [(out.seed, "your seed")]
    for char, p in zip(out.sampled, out.probs):
        label = next(name for floor, name in SURPRISE if p >= floor)
        if spans[-1][1] == label:
            spans[-1] = (spans[-1][0] + char, label)
        else:
            spans.append((char, label))
    return spans


def _candidates(out: Output) -> dict[str, float]:
    return {SHOWN_CHARS.get(c, c): p for c, p in out.candidates}


def _info(out: Output, seconds: float) -> str:
    lines = [f"⚠️ {n}" for n in out.notices]
    if out.finished:
        lines.append(f"{len(out.greedy)} greedy + {len(out.sampled)} sampled characters in {seconds:.2f} s · "
                     f"sampling seed **{out.sampling_seed}** (enter it under *Advanced* to get this text again)")
    else:
        lines.append("Generating…")
    return "\n\n".join(lines)


# ------------------------------------------------------------------------- the page

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


def build_demo(model: CharRNN | None, source: str = "weights", error: str | None = None) -> gr.Blocks:
    """The page for `model`; with model=None it shows `error` and every event raises it."""
    vocab_size = len(model.vocab) if model is not None else 1

    @gpu
    def run(seed: str, settings: Settings):
        yield from stream(model, seed, settings, every=1, interval=STREAM_INTERVAL)

    def checked(seed, length, temperature, top_k, top_p, sampling_seed, stop_at):
        if model is None:
            raise gr.Error(f"No model is loaded: {error}")
        return _seed_text(seed), _settings(length, temperature, top_k, top_p, sampling_seed, stop_at, vocab_size)

    def sampled_label(temperature):
        return gr.update(label=f"Sampled (temperature {_number(temperature, 'Temperature', *TEMPERATURE[:2]):g})")

    def generate(seed, length, temperature, top_k, top_p, sampling_seed, stop_at):
        seed, settings = checked(seed, length, temperature, top_k, top_p, sampling_seed, stop_at)
        start = time.perf_counter()
        for out in run(seed, settings):
            yield (out.seed + out.greedy, out.seed + out.sampled, _surprise(out), _candidates(out),
                   _info(out, time.perf_counter() - start))

    def resample(seed, length, temperature, top_k, top_p, sampling_seed, stop_at):
        """The sampled side again with a fresh sampling seed; greedy would not change."""
        seed, settings = checked(seed, length, temperature, top_k, top_p, None, stop_at)
        start = time.perf_counter()
        for out in run(seed, settings):
            yield out.seed + out.sampled, _surprise(out), _candidates(out), _info(out, time.perf_counter() - start)

    with gr.Blocks(title="charrnn · Don Quijote") as demo:
        gr.Markdown("# charrnn: *Don Quijote*, one character at a time\n"
                    "Type the beginning of a sentence in Spanish and watch a character-level recurrent "
                    "network continue it: the **greedy** text takes the likeliest character at every step, "
                    "the **sampled** one draws it at random from the model's prediction.")
        if model is None:
            gr.Markdown(f"## ⚠️ No model is loaded\n{error}", elem_id="load-error")
        with gr.Row():
            with gr.Column(scale=3):
                seed = gr.Textbox(label="Seed text", lines=3, max_lines=8, elem_id="seed",
                                  placeholder="En un lugar de la Mancha…")
                gr.Examples(EXAMPLES, inputs=seed, label="Examples in the novel's style")
            with gr.Column(scale=2):
                temperature = gr.Slider(*TEMPERATURE[:2], value=TEMPERATURE[2], step=0.05, label="Temperature",
                                        info="Low: safe and repetitive. High: adventurous, then garbled.",
                                        elem_id="temperature")
                length = gr.Slider(*LENGTH[:2], value=LENGTH[2], step=1, label="Length (characters)",
                                   elem_id="length")
                with gr.Accordion("Advanced", open=False):
                    top_k = gr.Slider(0, vocab_size, value=0, step=1, label="Top-k (0 = off)",
                                      info="Sample only among the k likeliest characters.")
                    top_p = gr.Slider(*TOP_P[:2], value=TOP_P[2], step=0.05, label="Top-p (1 = off)",
                                      info="Sample only within this much probability mass.")
                    sampling_seed = gr.Number(-1, precision=0, minimum=-1, label="Sampling seed (-1 = random)",
                                              info="Same seed and settings give the same text.")
                    stop_at = gr.Radio(list(STOP_AT), value="don't stop", label="Stop at")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                    again = gr.Button("Re-sample", elem_id="resample")
        with gr.Row(equal_height=True):
            greedy = gr.Textbox(label="Greedy (most likely char each step)", lines=10, max_lines=20,
                                interactive=False, elem_id="greedy")
            sampled = gr.Textbox(label=f"Sampled (temperature {TEMPERATURE[2]:g})", lines=10, max_lines=20,
                                 interactive=False, elem_id="sampled")
        info = gr.Markdown(elem_id="info")
        with gr.Row():
            with gr.Column(scale=3):
                surprise = gr.HighlightedText(label="Sampled text, coloured by how surprising each character "
                                                    "was to the model", color_map=COLORS, show_legend=True,
                                              elem_id="surprise")
            with gr.Column(scale=2):
                candidates = gr.Label(num_top_classes=10, label="Likeliest next characters after the sampled text",
                                      elem_id="candidates")
        with gr.Accordion("About", open=False):
            gr.Markdown(about(model, source) if model is not None else f"No model is loaded: {error}")
        read_tab(model, error)
        inside_tab(model, error)

        inputs = [seed, length, temperature, top_k, top_p, sampling_seed, stop_at]
        # preprocess=False: raw values reach _settings, which explains any bad one in a sentence.
        # The label is set first, outside the queue, so the API's outputs stay plain values.
        gr.on([go.click, seed.submit], sampled_label, temperature, sampled, api_name="sampled_label",
              preprocess=False, queue=False).success(
            generate, inputs, [greedy, sampled, surprise, candidates, info], api_name="generate",
            preprocess=False, concurrency_id="generation")
        again.click(sampled_label, temperature, sampled, api_name="resample_label", preprocess=False,
                    queue=False).success(
            resample, inputs, [sampled, surprise, candidates, info], api_name="resample", preprocess=False,
            concurrency_id="generation")
    return demo.queue(max_size=64, default_concurrency_limit=2)  # 2 cores: two generations at a time


# ------------------------------------------------------------------------- reading and looking inside

READ_LIMIT = 20_000  # chars per text in the Read and Look inside tabs: ~10 s of adaptive reading here
PASSAGES = [  # from the novel's last part (its validation text: the model never trained on it)
    "-¿Qué es lo que dices, niña? Mira que dicen que el que canta es un mozo de mulas.\n"
    "-No es sino señor de lugares -respondió Clara-, y el que le tiene en mi alma con tanta seguridad, "
    "que si él no quiere dejalle, no le será quitado eternamente.",
    "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía un hidalgo "
    "de los de lanza en astillero, adarga antigua, rocín flaco y galgo corredor.",
]
SURPRISE_BITS = [(10, "#ef4444"), (6, "#f97316"), (3, "#fcd34d"), (1, "#fef3c7")]  # bits: colour from this many up


def _read_input(model: CharRNN | None, error: str | None, text) -> str:
    """The text of a Read / Look inside request, or a gr.Error that says what is wrong with it."""
    if model is None:
        raise gr.Error(f"No model is loaded: {error}")
    if not isinstance(text, str):
        raise gr.Error("The text must be a string.")
    if not text.strip():
        raise gr.Error("Paste a text to read first (or pick a passage of the novel).")
    if len(text) > READ_LIMIT:
        raise gr.Error(f"The text is {len(text):,} characters long; the limit is {READ_LIMIT:,}. Paste a shorter passage.")
    return text


def _spans_html(chars: str, styles: list[str], title: str) -> str:
    """chars as HTML, each run of chars with the same style in one span; line breaks kept (pre-wrap)."""
    import html

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


def _surprise_style(lp) -> str:
    if lp is None:
        return "color: #9ca3af; text-decoration: line-through"
    bits = -lp / math.log(2)
    return next((f"background-color: {c}" for floor, c in SURPRISE_BITS if bits >= floor), "")


def read_tab(model: CharRNN | None, error: str | None = None) -> None:
    """The "Read a text" tab: every char coloured by how surprising it was to the model. Endpoint /score."""
    from charrnn.data import DataError
    from charrnn.evaluate import Adapt, novel_nats_per_char, read

    def score(text, adapt):
        text = _read_input(model, error, text)
        if not isinstance(adapt, bool):
            raise gr.Error("'Adapt as it reads' must be true or false.")
        try:
            reading = read(model, text, Adapt() if adapt else None)
        except ValueError:
            raise gr.Error("The text needs at least 2 characters the model knows.") from None
        first = next(i for i, lp in enumerate(reading.logprobs) if lp is not None)
        styles = ["" if i == first else _surprise_style(lp) for i, lp in enumerate(reading.logprobs)]
        summary = reading.score.summary(sum(reading.unknown.values()))
        try:
            novel = f"; the novel's own validation text: {novel_nats_per_char(model):.3f} nats/char (static)"
        except DataError:  # no copy of the novel here and no network: say nothing rather than guess
            novel = ""
        lines = [f"**{summary['nats_per_char']:.3f} nats/char** ({summary['bits_per_char']:.3f} bits/char) over "
                 f"{summary['chars']:,} characters, {'adapting as it read' if adapt else 'static weights'}{novel}."]
        if reading.unknown:
            shown = ", ".join(f"`{c!r}` ×{n}" for c, n in reading.unknown.most_common(8))
            n = summary["unknown_chars"]
            lines.append(f"⚠️ {n} character{'s' * (n != 1)} the model does not know {'were' if n != 1 else 'was'} "
                         f"skipped (struck through): {shown}.")
        words = [[w, round(bits, 1)] for w, bits in reading.surprising_words()]
        return _spans_html(reading.text, styles, "text coloured by surprise"), "\n\n".join(lines), summary, words

    with gr.Tab("Read a text", id="read"):
        gr.Markdown("Paste a text and see how surprising each character was to the model: "
                    "white under 1 bit, then pale yellow, yellow, orange and red from 10 bits up. "
                    "With *adapt*, the model learns from the text as it reads it (dynamic evaluation).")
        text = gr.Textbox(label=f"Text (up to {READ_LIMIT:,} characters)", lines=6, max_lines=14, elem_id="read-text")
        gr.Examples(PASSAGES, inputs=text, label="Passages of the novel")
        with gr.Row():
            adapt = gr.Checkbox(False, label="Adapt as it reads", elem_id="read-adapt")
            go = gr.Button("Read", variant="primary", elem_id="read-go")
        totals = gr.Markdown(elem_id="read-totals")
        view = gr.HTML(elem_id="read-view")
        with gr.Row():
            words = gr.Dataframe(headers=["word", "bits"], label="Most surprising words", elem_id="read-words")
            result = gr.JSON(label="Totals (as `python -m charrnn.evaluate` prints them)", elem_id="read-json")
        go.click(score, [text, adapt], [view, totals, result, words], api_name="score", preprocess=False,
                 concurrency_id="reading")


def inside_tab(model: CharRNN | None, error: str | None = None) -> None:
    """The "Look inside" tab: the text coloured by one cell's activation, and the cells that track
    features of the novel. Endpoint /inside."""
    from charrnn import inside as cells
    from charrnn.data import DataError

    def look(text, cell):
        text = _read_input(model, error, text)
        last = cells.num_cells(model) - 1
        whole = (isinstance(cell, int) and not isinstance(cell, bool)) or (isinstance(cell, float) and cell.is_integer())
        if not whole or not 0 <= cell <= last:
            raise gr.Error(f"The cell must be a whole number from 0 to {last:,}.")
        cell = int(cell)
        text = model.vocab.normalize(text)
        known = [c in model.vocab.stoi for c in text]
        if sum(known) < 1:
            raise gr.Error("The text has no character the model knows.")
        acts = cells.activations(model, torch.tensor(model.vocab.encode(text, errors="drop")))[:, cell]
        acts = acts / acts.abs().max().clamp_min(1e-6)  # -1..1 on this text
        values = iter(acts.tolist())
        styles = [_activation_style(next(values)) if k else _surprise_style(None) for k in known]
        try:
            ranked, on = cells.novel_ranking(model), "the novel's validation text"
        except DataError:  # no copy of the novel here: rank on the visitor's text instead
            ranked, on = cells.rank_cells(model, text), "this text"
        ranking = [[r["feature"], r["cell"], r["name"], r["correlation"]] for r in ranked]
        info = (f"Cell **{cell}** = {cells.cell_name(model, cell)}: blue where it is negative, red where positive "
                f"(scaled to its largest value on this text). The table ranks cells on {on}.")
        return _spans_html(text, styles, "text coloured by a cell"), info, ranking

    with gr.Tab("Look inside", id="inside"):
        gr.Markdown("Pick a cell of the network and see its value at every character. Cells are numbered "
                    "across layers: for an LSTM, the cell states *c* of each layer first, then the hidden states *h*. "
                    "The table ranks the cells that best follow features of the novel's own text.")
        text = gr.Textbox(label=f"Text (up to {READ_LIMIT:,} characters)", lines=6, max_lines=14,
                          value=PASSAGES[0], elem_id="inside-text")
        with gr.Row():
            cell = gr.Number(0, precision=0, minimum=0, label="Cell number", elem_id="inside-cell")
            go = gr.Button("Show", variant="primary", elem_id="inside-go")
        info = gr.Markdown(elem_id="inside-info")
        view = gr.HTML(elem_id="inside-view")
        ranking = gr.Dataframe(headers=["feature", "cell", "which", "correlation"], elem_id="inside-ranking",
                               label="Cells that track features of the text (correlation)")
        go.click(look, [text, cell], [view, info, ranking], api_name="inside", preprocess=False,
                 concurrency_id="reading")


def _activation_style(v: float) -> str:
    v = round(v, 1)  # 21 shades: runs of similar values share a span
    if v == 0:
        return ""
    return f"background-color: rgba({'239, 68, 68' if v > 0 else '59, 130, 246'}, {abs(v):.1f})"


def load(source: str, device: str = "auto") -> tuple[CharRNN | None, str | None]:
    """The model, or None and a message for the page saying what is wrong and what to do."""
    try:
        return load_model(source, resolve_device(device)), None
    except (WeightsError, ValueError) as e:
        return None, (f"{e}. Train a model with `python train.py` (it writes `weights/`), or point the app at "
                      "a Hub repo with `--model OWNER/NAME` or the `CHARRNN_MODEL` environment variable.")


def serve(demo: gr.Blocks, host: str, port: int, **launch_args) -> None:
    """Launch the page. Gradio imports matplotlib.pyplot on the first event it runs (~0.5 s):
    import it now so that the first click streams as fast as the others."""
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        pass
    demo.launch(server_name=host, server_port=port, ssr_mode=False, css=CSS, **launch_args)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="The charrnn demo page.")
    p.add_argument("--model", default=os.environ.get("CHARRNN_MODEL", "weights"),
                   help="weights folder or Hub repo id (default: $CHARRNN_MODEL or weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, or $CHARRNN_DEVICE), cpu or cuda")
    p.add_argument("--host", default=None, help="default: 0.0.0.0 on Hugging Face Spaces, else 127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one char per step is latency-bound: extra threads only add sync overhead
    model, error = load(args.model, args.device)
    demo = build_demo(model, args.model, error)
    host = args.host or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    serve(demo, host, args.port, show_error=True)


if __name__ == "__main__":
    main()
