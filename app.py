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
import re  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from charrnn.device import resolve_device  # noqa: E402
from charrnn.engine import Busy, Engine, Limits, Solo  # noqa: E402
from charrnn.generate import Bounds, Output, SettingsError, check_seed_text, check_settings  # noqa: E402
from charrnn.hub import WeightsError, first_line, load_model  # noqa: E402
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
    """Model summary, the model card's metrics table when it can be read offline, and a link."""
    rnn = model.rnn
    text = "accent-free (the tutorials' setting)" if model.vocab.strip_accents else "accents, ñ, ¿ and ¡ kept"
    lines = [f"**Model:** {model.cell.upper()}, {rnn.num_layers} layer{'s' * (rnn.num_layers > 1)} × {rnn.hidden_size} units, "
             f"{model.num_params():,} parameters, {len(model.vocab)}-character vocabulary ({text}).",
             "Trained from scratch on *El ingenioso hidalgo don Quijote de la Mancha* (Part I)."]
    local = Path(source).exists()
    card = Path(source) / "README.md"
    if not local:
        from huggingface_hub import try_to_load_from_cache  # the cache only: no network call here

        cached = try_to_load_from_cache(source, "README.md")
        card = Path(cached) if isinstance(cached, str) else card
    if card.is_file():
        found = re.search(r"^## Metrics\n(.*?)(?=^## |\Z)", card.read_text(encoding="utf-8"), re.M | re.S)
        if found:
            metrics = "\n".join(line for line in found.group(1).strip().splitlines() if not line.startswith("!["))
            lines.append("**Metrics** (from the model card)\n\n" + metrics)
    if local:
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
