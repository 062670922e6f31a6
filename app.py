"""The demo page: type the beginning of a sentence in Spanish and watch the model continue it,
greedy and sampled side by side, as the characters are generated.

    python app.py [--model weights | OWNER/NAME] [--device auto|cpu|cuda] [--host H] [--port P]

Gradio Blocks only (layout, events, error messages). Every visitor's request goes to one
charrnn.engine.Engine, which steps all of them as one batch; charrnn.generate checks the settings.
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
from starlette.middleware import Middleware  # noqa: E402

from charrnn.device import resolve_device  # noqa: E402
from charrnn.engine import Busy, Engine, Limits, Solo  # noqa: E402
from charrnn.generate import Bounds, Output, SettingsError, check_seed_text, check_settings  # noqa: E402
from charrnn.hub import WeightsError, card_metrics, first_line, load_model  # noqa: E402
from charrnn.model import CharRNN  # noqa: E402
from charrnn.serving import BodyLimit, client_key  # noqa: E402

LENGTH = (50, 1000, 300)  # slider minimum, maximum, default
TEMPERATURE = (0.1, 2.0, 0.8)
TOP_P = (0.05, 1.0, 1.0)
STOP_AT = {"don't stop": None, "end of sentence": "sentence", "end of paragraph": "paragraph"}
STREAM_INTERVAL = 0.04  # s between streamed updates: smooth to the eye, light on the queue
# "engine": every request in one batch (charrnn.engine.Engine). "solo": the previous design, each
# request alone at batch 2, two at a time, kept to measure one against the other (bench/app_load.py).
SERVING = ("engine", "solo")
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
# The coloured view reads as running text: no pill per span, gaps only where the text has them,
# and a line break where the text has one (Gradio marks it with an empty .line-break span).
CSS = """
#surprise .textfield { display: block !important; font-size: 0; line-height: 1.6; }
#surprise .token-container, #surprise .token { display: inline !important; margin: 0 !important; padding: 0 !important;
  border-radius: 0 !important; font-size: 0; }
#surprise .text { font-size: var(--text-md); background-color: inherit; white-space: pre-wrap;
  margin: 0 !important; padding: 0 !important; }
#surprise .line-break { display: block; }
"""


def bounds(vocab_size: int) -> Bounds:
    """The settings the page accepts: its sliders' ranges, -1 for a random sampling seed."""
    return Bounds(length=LENGTH[:2], temperature=TEMPERATURE[:2], top_k=(0, vocab_size), top_p=TOP_P[:2],
                  sampling_seed=(-1, 2**31 - 1), random_seed=-1, stops=tuple(STOP_AT.items()))


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


def make_engine(model: CharRNN, serving: str = "engine") -> Engine | Solo:
    if serving not in SERVING:
        raise ValueError(f"serving must be one of {', '.join(SERVING)}, not {serving!r}")
    if serving == "solo":  # as before: no per-client limit, 64 requests waiting at most
        return Solo(model, Limits(max_waiting=64, per_client=10**9, per_client_waiting=10**9))
    return Engine(model)


def generation(engine: Engine | Solo | None, accepted: Bounds, error: str | None, resample: bool):
    """The handler of Generate (greedy, sampled and views) and of Re-sample (sampled and views, with
    a fresh sampling seed). Raw values arrive (preprocess=False); bad ones get a sentence."""

    async def run(seed, length, temperature, top_k, top_p, sampling_seed, stop_at, request: gr.Request):
        if engine is None:
            raise gr.Error(f"No model is loaded: {error}")
        try:
            settings = check_settings(length, temperature, top_k, top_p, None if resample else sampling_seed,
                                      stop_at, accepted)
            ticket = engine.submit(check_seed_text(seed), settings, client=client_key(request))
        except (SettingsError, Busy) as e:
            raise gr.Error(str(e)) from None
        start = time.perf_counter()
        try:
            async for out in engine.aupdates(ticket, STREAM_INTERVAL):
                views = (out.seed + out.sampled, _surprise(out), _candidates(out),
                         _info(out, time.perf_counter() - start))
                yield views if resample else (out.seed + out.greedy, *views)
        except Busy as e:
            raise gr.Error(str(e)) from None
        except Exception as e:  # noqa: BLE001 (one request's failure, said in a line; the engine goes on)
            raise gr.Error(f"The generation failed: {first_line(e)}") from None

    return run


def sampled_label(temperature):
    """The sampled box's label follows the temperature; a bad value is left to the generation's
    own error message."""
    try:
        return gr.update(label=f"Sampled (temperature {check_settings(300, temperature, 0, 1.0).temperature:g})")
    except SettingsError:
        return gr.update()


def controls(vocab_size: int) -> dict:
    """The seed box, the sliders and the buttons."""
    c = {}
    with gr.Row():
        with gr.Column(scale=3):
            c["seed"] = gr.Textbox(label="Seed text", lines=3, max_lines=8, elem_id="seed",
                                   placeholder="En un lugar de la Mancha…")
            gr.Examples(EXAMPLES, inputs=c["seed"], label="Examples in the novel's style")
        with gr.Column(scale=2):
            c["temperature"] = gr.Slider(*TEMPERATURE[:2], value=TEMPERATURE[2], step=0.05, label="Temperature",
                                         info="Low: safe and repetitive. High: adventurous, then garbled.",
                                         elem_id="temperature")
            c["length"] = gr.Slider(*LENGTH[:2], value=LENGTH[2], step=1, label="Length (characters)",
                                    elem_id="length")
            with gr.Accordion("Advanced", open=False):
                c["top_k"] = gr.Slider(0, vocab_size, value=0, step=1, label="Top-k (0 = off)",
                                       info="Sample only among the k likeliest characters.")
                c["top_p"] = gr.Slider(*TOP_P[:2], value=TOP_P[2], step=0.05, label="Top-p (1 = off)",
                                       info="Sample only within this much probability mass.")
                c["sampling_seed"] = gr.Number(-1, precision=0, minimum=-1, label="Sampling seed (-1 = random)",
                                               info="Same seed and settings give the same text.")
                c["stop_at"] = gr.Radio(list(STOP_AT), value="don't stop", label="Stop at")
            with gr.Row():
                c["go"] = gr.Button("Generate", variant="primary", elem_id="generate")
                c["again"] = gr.Button("Re-sample", elem_id="resample")
    return c


def outputs() -> dict:
    """The two texts, the info line, the coloured view and the next-char candidates."""
    o = {}
    with gr.Row(equal_height=True):
        o["greedy"] = gr.Textbox(label="Greedy (most likely char each step)", lines=10, max_lines=20,
                                 interactive=False, elem_id="greedy")
        o["sampled"] = gr.Textbox(label=f"Sampled (temperature {TEMPERATURE[2]:g})", lines=10, max_lines=20,
                                  interactive=False, elem_id="sampled")
    o["info"] = gr.Markdown(elem_id="info")
    with gr.Row():
        with gr.Column(scale=3):
            o["surprise"] = gr.HighlightedText(label="Sampled text, coloured by how surprising each character "
                                                     "was to the model", color_map=COLORS, show_legend=True,
                                               elem_id="surprise")
        with gr.Column(scale=2):
            o["candidates"] = gr.Label(num_top_classes=10, label="Likeliest next characters after the sampled text",
                                       elem_id="candidates")
    return o


def build_demo(model: CharRNN | None, source: str = "weights", error: str | None = None,
               serving: str = "engine") -> gr.Blocks:
    """The page for `model`; with model=None it shows `error` and every event raises it."""
    engine = make_engine(model, serving) if model is not None else None
    accepted = bounds(len(model.vocab) if model is not None else 1)
    with gr.Blocks(title="charrnn · Don Quijote") as demo:
        gr.Markdown("# charrnn: *Don Quijote*, one character at a time\n"
                    "Type the beginning of a sentence in Spanish and watch a character-level recurrent "
                    "network continue it: the **greedy** text takes the likeliest character at every step, "
                    "the **sampled** one draws it at random from the model's prediction.")
        if model is None:
            gr.Markdown(f"## ⚠️ No model is loaded\n{error}", elem_id="load-error")
        c = controls(accepted.top_k[1])
        o = outputs()
        with gr.Accordion("About", open=False):
            gr.Markdown(about(model, source) if model is not None else f"No model is loaded: {error}")
        read_tab(model, error)
        inside_tab(model, error)

        inputs = [c[k] for k in ("seed", "length", "temperature", "top_k", "top_p", "sampling_seed", "stop_at")]
        views = [o["sampled"], o["surprise"], o["candidates"], o["info"]]
        # The label is set first, outside the queue and off the API, so the API's outputs stay plain values.
        # preprocess=False: raw values reach the validator, which explains any bad one in a sentence.
        # No concurrency limit: the engine batches every request and applies its own limits.
        for triggers, resample, name in (([c["go"].click, c["seed"].submit], False, "generate"),
                                         ([c["again"].click], True, "resample")):
            gr.on(triggers, sampled_label, c["temperature"], o["sampled"], queue=False, preprocess=False,
                  api_visibility="private").success(
                generation(engine, accepted, error, resample), inputs,
                views if resample else [o["greedy"], *views], api_name=name, preprocess=False,
                concurrency_limit=None)
    demo.engine = engine  # for tests and benchmarks that look at the batch
    return demo.queue(max_size=256)


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

    def look(text, cell):
        text = _read_input(model, error, text)
        last = cells.num_cells(model) - 1
        whole = (isinstance(cell, int) and not isinstance(cell, bool)) or (isinstance(cell, float) and cell.is_integer())
        if not whole or not 0 <= cell <= last:
            raise gr.Error(f"The cell must be a whole number from 0 to {last:,}.")
        cell = int(cell)
        try:
            text, values = cells.cell_trace(model, text, cell)
        except ValueError:
            raise gr.Error("The text has no character the model knows.") from None
        styles = [_surprise_style(None) if v is None else _activation_style(v) for v in values]
        ranked, on = cells.ranking(model, text)
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
        device = resolve_device(device)
    except ValueError as e:
        return None, (f"{_sentence(e)} Start the app with `--device cpu`, or `--device auto` to use CUDA "
                      "when there is one.")
    try:
        return load_model(source, device), None
    except (WeightsError, ValueError) as e:
        return None, (f"{_sentence(e)} Train a model with `python train.py` (it writes `weights/`), or point the app "
                      "at a Hub repo with `--model OWNER/NAME` or the `CHARRNN_MODEL` environment variable.")


def _sentence(e: Exception) -> str:
    """An error message ending in exactly one period."""
    return str(e).strip().rstrip(".") + "."


def serve(demo: gr.Blocks, host: str | None = None, port: int | None = None, **launch_args) -> None:
    """Launch the page; without host or port, Gradio reads $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT
    (Spaces set them). Request bodies over 64 KB are refused before they are parsed. Gradio imports
    matplotlib.pyplot on the first event it runs (~0.5 s): import it now, so the first click is fast."""
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        pass
    demo.launch(server_name=host, server_port=port, ssr_mode=False, css=CSS,
                app_kwargs={"middleware": [Middleware(BodyLimit)]}, **launch_args)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="The charrnn demo page.")
    p.add_argument("--model", default=os.environ.get("CHARRNN_MODEL", "weights"),
                   help="weights folder or Hub repo id (default: $CHARRNN_MODEL or weights)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available, or $CHARRNN_DEVICE), cpu or cuda")
    p.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT, else 7860")
    p.add_argument("--serving", choices=SERVING, default=os.environ.get("CHARRNN_SERVING", "engine"),
                   help="engine: one batch for every request (default: $CHARRNN_SERVING or engine); "
                        "solo: the old design, each request alone, two at a time, for comparison")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one-char steps are small: see charrnn/engine.py for why one thread
    model, error = load(args.model, args.device)
    serve(build_demo(model, args.model, error, args.serving), args.host, args.port, show_error=True)


if __name__ == "__main__":
    main()
