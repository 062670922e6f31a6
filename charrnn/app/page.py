"""The demo page's layout and events (Gradio Blocks): type the beginning of a sentence and watch the
model continue it, greedy and sampled side by side; read a text; look inside. The page speaks of
the model's own corpus (its corpus.json: title, description, seeds, passages), never assuming one.

Every visitor's generation goes to one charrnn.engine.Engine, which steps all of them as one
batch; the handlers (handlers.py) check inputs and the views (views.py) shape what is shown."""
from typing import Callable

import gradio as gr

from charrnn.corpus_profile import CorpusProfile, unrecorded
from charrnn.engine import Engine
from charrnn.hub import card_metrics, corpus_of
from charrnn.model import CharRNN
from charrnn.reading import Readers

from . import handlers, views
from .handlers import LENGTH, READ_LIMIT, STOP_AT, TEMPERATURE, TOP_P, bounds, make_engine

MIN_COLUMN = 320  # px: narrower screens (a 390 px phone) stack side-by-side outputs
CSS = ""  # (the coloured views are plain HTML from views.spans_html: nothing to restyle)


def controls(vocab_size: int, corpus: CorpusProfile) -> dict:
    """The seed box with the corpus's own seeds as examples, the sliders and the buttons."""
    c = {}
    with gr.Row():
        with gr.Column(scale=3):
            c["seed"] = gr.Textbox(label="Seed text", lines=3, max_lines=8, elem_id="seed",
                                   placeholder=views.placeholder(corpus))
            if corpus.seeds:
                gr.Examples(list(corpus.seeds), inputs=c["seed"], label=f"Beginnings from {corpus.title}")
        with gr.Column(scale=2):
            c["temperature"] = gr.Slider(*TEMPERATURE[:2], value=TEMPERATURE[2], step=0.05,
                                         label="Temperature",
                                         info="Low: safe and repetitive. High: adventurous, then garbled.",
                                         elem_id="temperature")
            c["length"] = gr.Slider(*LENGTH[:2], value=LENGTH[2], step=1, label="Length (characters)",
                                    elem_id="length")
            with gr.Accordion("Advanced", open=False):
                c["top_k"] = gr.Slider(0, vocab_size, value=0, step=1, label="Top-k (0 = off)",
                                       info="Sample only among the k likeliest characters.")
                c["top_p"] = gr.Slider(*TOP_P[:2], value=TOP_P[2], step=0.05, label="Top-p (1 = off)",
                                       info="Sample only within this much probability mass.")
                c["sampling_seed"] = gr.Number(-1, precision=0, minimum=-1,
                                               label="Sampling seed (-1 = random)",
                                               info="Same sampling seed and settings give the same text.")
                c["stop_at"] = gr.Radio(list(STOP_AT), value="don't stop", label="Stop at")
            with gr.Row():
                c["go"] = gr.Button("Generate", variant="primary", elem_id="generate")
                c["again"] = gr.Button("Re-sample", elem_id="resample")
    return c


def outputs() -> dict:
    """The two texts, the info line, the coloured view and the next-char candidates."""
    o = {}
    # min_width: on a phone-sized screen the two boxes (and the two views) stack instead of
    # squeezing into narrow columns; Gradio wraps a row's children that cannot get their minimum.
    with gr.Row(equal_height=True):
        o["greedy"] = gr.Textbox(label="Greedy (most likely char each step)", lines=10, max_lines=20,
                                 interactive=False, elem_id="greedy", min_width=MIN_COLUMN)
        o["sampled"] = gr.Textbox(label=f"Sampled (temperature {TEMPERATURE[2]:g})", lines=10, max_lines=20,
                                  interactive=False, elem_id="sampled", min_width=MIN_COLUMN)
    o["info"] = gr.Markdown(elem_id="info")
    with gr.Row():
        with gr.Column(scale=3, min_width=MIN_COLUMN):
            gr.HTML(views.legend_html((views.SEED_LABEL,)), elem_id="surprise-legend")
            o["surprise"] = gr.HTML(label="Sampled text, coloured by how surprising each character was",
                                    elem_id="surprise")
        with gr.Column(scale=2, min_width=MIN_COLUMN):
            o["candidates"] = gr.Label(num_top_classes=10,
                                       label="Likeliest next characters after the sampled text",
                                       elem_id="candidates")
    return o


def build_demo(model: CharRNN | None, source: str = "weights", error: str | None = None,
               engine_maker: Callable[[CharRNN], Engine] | None = None) -> gr.Blocks:
    """The page for `model`; with model=None it shows `error` and every event raises it.
    `engine_maker(model)` gives the generation engine (default: make_engine)."""
    engine = (engine_maker or make_engine)(model) if model is not None else None
    readers = Readers()  # the Read and Look inside tabs' work: per-visitor limits, turns (charrnn.reading)
    accepted = bounds(len(model.vocab) if model is not None else 1)
    corpus = corpus_of(source) if model is not None else unrecorded()
    with gr.Blocks(title=f"charrnn · {corpus.title}") as demo:
        gr.Markdown(views.intro(corpus))
        if model is None:
            gr.Markdown(f"## ⚠️ No model is loaded\n{error}", elem_id="load-error")
        c = controls(accepted.top_k[1], corpus)
        o = outputs()
        with gr.Accordion("About", open=False):
            gr.Markdown(views.about(model, source,
                                    corpus) if model is not None else f"No model is loaded: {error}")
        read_tab(model, error, readers,
                 views.card_reference(card_metrics(source)) if model is not None else None, corpus.passages)
        inside_tab(model, error, readers, corpus.passages)
        watch_tab(handlers.snapshot_engines(model, source, engine), accepted, error, corpus.seeds)
        write_tab(model, accepted, error, readers)

        inputs = [c[k] for k in ("seed", "length", "temperature", "top_k", "top_p",
                                 "sampling_seed", "stop_at")]
        shown = [o["sampled"], o["surprise"], o["candidates"], o["info"]]
        # The label is set first, outside the queue and off the API, so the API's outputs stay plain values.
        # preprocess=False: raw values reach the validator, which explains any bad one in a sentence.
        # No concurrency limit: the engine batches every request and applies its own limits.
        for triggers, resample, name in (([c["go"].click, c["seed"].submit], False, "generate"),
                                         ([c["again"].click], True, "resample")):
            gr.on(triggers, handlers.sampled_label, c["temperature"], o["sampled"], queue=False,
                  preprocess=False, api_visibility="private").success(
                handlers.generation(engine, accepted, error, resample), inputs,
                shown if resample else [o["greedy"], *shown], api_name=name, preprocess=False,
                concurrency_limit=None)
    demo.engine, demo.readers = engine, readers  # for tests and benchmarks that look inside
    return demo.queue(max_size=256)


def text_to_read(explanation: str, what: str, elem_id: str, value: str | None = None) -> gr.Textbox:
    """The head of a tab that reads a pasted text (Read, Look inside, Write like this): what the tab
    does, then the box for the text, which takes up to READ_LIMIT chars (the handlers refuse more)."""
    gr.Markdown(explanation)
    return gr.Textbox(label=f"{what} (up to {READ_LIMIT:,} characters)", lines=6, max_lines=14, value=value,
                      elem_id=elem_id)


READ_NOTE = ("Paste a text and see how surprising each character was to the model, on the same scale as the "
             "generated text. With *adapt*, the model learns from the text as it reads it (dynamic "
             "evaluation).")


def read_tab(model: CharRNN | None, error: str | None, readers: Readers, reference: str | None,
             passages: tuple[str, ...] = ()) -> None:
    """The "Read a text" tab: every char coloured by how surprising it was to the model. Endpoint /score."""
    with gr.Tab("Read a text", id="read"):
        text = text_to_read(READ_NOTE, "Text", "read-text")
        if passages:
            gr.Examples(list(passages), inputs=text, label="Passages of the text it was trained on")
        with gr.Row():
            adapt = gr.Checkbox(False, label="Adapt as it reads", elem_id="read-adapt")
            go = gr.Button("Read", variant="primary", elem_id="read-go")
        totals = gr.Markdown(elem_id="read-totals")
        gr.HTML(views.legend_html((views.UNKNOWN_LABEL,)), elem_id="read-legend")
        view = gr.HTML(elem_id="read-view")
        with gr.Row():
            words = gr.Dataframe(headers=["word", "bits"], label="Most surprising words",
                                 elem_id="read-words")
            result = gr.JSON(label="Totals (as charrnn evaluate prints them)", elem_id="read-json")
        # No Gradio concurrency limit: a reading starts at once and charrnn.reading decides when it
        # computes, so readings never wait in (or fill) the queue that generation uses.
        go.click(handlers.scorer(model, error, readers, reference), [text, adapt],
                 [view, totals, result, words], api_name="score", preprocess=False, concurrency_limit=None)


INSIDE_NOTE = ("Pick a unit of the network (one number of its state) and see its value at every character. "
               "Units are numbered across layers: for an LSTM, the memories *c* (its cell states) of each "
               "layer first, then the hidden states *h*. The table ranks the units that best follow features "
               "of text (position in the word and line, quotes, brackets, ...) on passages of the model's "
               "own corpus.")


def inside_tab(model: CharRNN | None, error: str | None, readers: Readers,
               passages: tuple[str, ...] = ()) -> None:
    """The "Look inside" tab: the text coloured by one unit's activation, and the units that track
    features of text, ranked on the corpus's own passages. Endpoint /inside."""
    with gr.Tab("Look inside", id="inside"):
        text = text_to_read(INSIDE_NOTE, "Text", "inside-text", passages[0] if passages else "")
        with gr.Row():
            unit = gr.Number(0, precision=0, minimum=0, label="Unit number", elem_id="inside-unit")
            go = gr.Button("Show", variant="primary", elem_id="inside-go")
        info = gr.Markdown(elem_id="inside-info")
        view = gr.HTML(elem_id="inside-view")
        ranking = gr.Dataframe(headers=["feature", "unit", "which", "correlation"], elem_id="inside-ranking",
                               label="Units that track features of the text (correlation)")
        go.click(handlers.looker(model, error, readers, passages), [text, unit], [view, info, ranking],
                 api_name="inside", preprocess=False, concurrency_limit=None)


# Written for this page (MIT, as the project; bench/texts/ has them in full): a letter, and English,
# a language the model never read.
STYLE_EXAMPLES = [
    "Querida Marta: te escribo desde el tren, que otra vez va con retraso. El piso nuevo está bien, mejor "
    "de lo que esperaba: es pequeño, pero tiene un balcón que da a una plaza con dos plátanos enormes. Por "
    "las mañanas entra el sol en la cocina y me tomo el café de pie, mirando a los vecinos que sacan a "
    "pasear a los perros.",
    "The lighthouse on Gull Point had not been lit for eleven years when Thomas Hale arrived to repair it. "
    "The keeper's cottage stood at the foot of the tower, a low stone building with a green door and a "
    "garden full of nettles. Inside there was a table, two chairs, an iron stove and a shelf of logbooks "
    "that went back to 1871.",
]


def write_settings(prefix: str, seed: str) -> list:
    """Seed, length, temperature and sampling seed for the Watch and Write tabs, in that order."""
    with gr.Row():
        seed = gr.Textbox(label="Seed text", value=seed, lines=2, scale=3, elem_id=f"{prefix}-seed")
        with gr.Column(scale=2):
            length = gr.Slider(*LENGTH[:2], value=200, step=1, label="Length (characters)",
                               elem_id=f"{prefix}-length")
            temperature = gr.Slider(*TEMPERATURE[:2], value=TEMPERATURE[2], step=0.05,
                                    label="Temperature (sampled)", elem_id=f"{prefix}-temperature")
            sampling_seed = gr.Number(1, precision=0, minimum=-1, label="Sampling seed (-1 = random)",
                                      info="The same seeds give the same texts.",
                                      elem_id=f"{prefix}-sampling-seed")
    return [seed, length, temperature, sampling_seed]


def watch_tab(shots: list, accepted, error: str | None, seeds: tuple[str, ...] = ()) -> None:
    """The "Watch it learn" tab: what each snapshot of the training run writes, side by side, from
    the corpus's first seed. Endpoint /watch."""
    with gr.Tab("Watch it learn", id="watch"):
        gr.Markdown("The same seed continued by the model as it was at several moments of its training: "
                    "first spaces and short words, then words, then names, punctuation and dialogue. "
                    "Greedy takes the likeliest character, sampled draws one with the sampling seed.\n\n"
                    + views.snapshots_note([s for s, _ in shots]), elem_id="watch-note")
        inputs = write_settings("watch", seeds[0] if seeds else "")
        go = gr.Button("Watch it write", variant="primary", elem_id="watch-go")
        view = gr.HTML(elem_id="watch-view")
        with gr.Accordion("As data (the /watch endpoint's answer)", open=False):
            rows = gr.JSON(elem_id="watch-json")
        # No concurrency limit: each snapshot's engine batches every request and applies its own limits.
        go.click(handlers.watcher(shots, accepted, error), inputs, [view, rows], api_name="watch",
                 preprocess=False, concurrency_limit=None)


WRITE_NOTE = ("Paste a passage (a letter, a poem, a page of another book): the model reads it learning as it "
              "reads (the *Read a text* tab's dynamic evaluation, on a copy: the page's model never "
              "changes), then continues your seed in its style. The page says how much it adapted.")


def write_tab(model: CharRNN | None, accepted, error: str | None, readers: Readers) -> None:
    """The "Write like this" tab: the model reads a passage adapting, on a copy, then continues a seed
    in its style. Endpoint /write_like."""
    with gr.Tab("Write like this", id="write"):
        passage = text_to_read(WRITE_NOTE, "Passage", "write-passage")
        gr.Examples(STYLE_EXAMPLES, inputs=passage, label="Passages the model never read")
        inputs = [passage, *write_settings("write", "Querida")]
        go = gr.Button("Read it, then write", variant="primary", elem_id="write-go")
        info = gr.Markdown(elem_id="write-info")
        with gr.Row(equal_height=True):
            greedy = gr.Textbox(label="Greedy, adapted", lines=8, interactive=False, elem_id="write-greedy")
            sampled = gr.Textbox(label="Sampled, adapted", lines=8, interactive=False,
                                 elem_id="write-sampled")
        with gr.Accordion("How it adapted, as data", open=False):
            how = gr.JSON(elem_id="write-json")
        # As the Read tab: charrnn.reading limits and schedules the reading, not Gradio's queue.
        go.click(handlers.writer(model, accepted, error, readers), inputs, [greedy, sampled, info, how],
                 api_name="write_like", preprocess=False, concurrency_limit=None)
