"""Start the demo page: load the model, launch Gradio behind the request-size limit.

    charrnn app [--model weights | OWNER/NAME] [--device auto|cpu|cuda] [--precision auto|fp32|bf16]
                [--host H] [--port P]
"""
import argparse
import os
import sys
from typing import Callable

import gradio as gr
import torch
from starlette.middleware import Middleware

from charrnn.device import resolve_device
from charrnn.engine import Engine
from charrnn.generate import MAX_SEED_CHARS
from charrnn.model import CharRNN
from charrnn.precision import PRECISIONS, use
from charrnn.precision import describe as describe_precision
from charrnn.pretrained import load_model
from charrnn.serving import BodyLimit, Limit, json_bytes
from charrnn.threads import configure
from charrnn.weights import WeightsError

from .handlers import READ_LIMIT
from .page import CSS, build_demo

# The engine's stepper releases the GIL in every torch op of a step and must get it back from the
# web server's thread: at Python's default 5 ms a step of 64 rows took ~29 ms of wall time in the app
# at 32 visitors (10 ms alone); at 0.5 ms, ~19 ms, and 2,500 chars/s against 2,000 (bench/RESULTS.md).
GIL_SWITCH_S = 0.0005


def load(source: str, device: str = "auto", precision: str = "auto") -> tuple[CharRNN | None, str | None]:
    """The model, in `precision` (charrnn/precision.py), or None and a message for the page saying
    what is wrong and what to do."""
    try:
        device = resolve_device(device)
    except ValueError as e:
        return None, (f"{sentence(e)} Start the app with `--device cpu`, or `--device auto` to use CUDA "
                      "when there is one.")
    try:
        model = load_model(source, device)
        use(model, precision)
        return model, None
    except (WeightsError, ValueError) as e:
        return None, (f"{sentence(e)} Train a model with `python train.py` (it writes `weights/`), or point "
                      "the app at a Hub repo with `--model OWNER/NAME` or the `CHARRNN_MODEL` environment "
                      "variable.")


def sentence(e: Exception) -> str:
    """An error message ending in exactly one period."""
    return str(e).strip().rstrip(".") + "."


def body_limits() -> dict[str, Limit]:
    """Each endpoint's request-size limit, from the chars it accepts with every char escaped
    (charrnn.serving); the queue's own join names no endpoint before it is parsed, so it gets the
    largest. Other paths keep serving.DEFAULT_LIMIT (64 KB), which holds any 2,000-char seed."""
    reading = Limit(json_bytes(READ_LIMIT), f"a text to read has up to {READ_LIMIT:,} characters")
    seed = f"the model reads only the last {MAX_SEED_CHARS:,} characters of a seed"
    passage_and_seed = Limit(json_bytes(READ_LIMIT + MAX_SEED_CHARS), f"{reading.what}, and {seed}")
    return {"/score": reading, "/inside": reading, "/write_like": passage_and_seed,
            "/queue/join": passage_and_seed}


def serve(demo: gr.Blocks, host: str | None = None, port: int | None = None, **launch_args) -> None:
    """Launch the page; without host or port, Gradio reads $GRADIO_SERVER_NAME / $GRADIO_SERVER_PORT
    (Spaces set them). Request bodies over their endpoint's limit are refused before they are
    parsed. Gradio imports matplotlib.pyplot on the first event it runs (~0.5 s): import it now,
    so the first click is fast."""
    try:
        import matplotlib.pyplot  # noqa: F401, PLC0415 (optional; imported only to warm Gradio's first event)
    except ImportError:
        pass
    demo.launch(server_name=host, server_port=port, ssr_mode=False, css=CSS,
                app_kwargs={"middleware": [Middleware(BodyLimit, limits=body_limits())]}, **launch_args)


def describe(model: CharRNN | None, source: str, error: str | None, serving: str) -> str:
    """The start-up line for the log: which model, device, serving mode, torch threads and precision."""
    if model is None:
        return f"charrnn app: no model loaded from {source}: {error}"
    rnn, device = model.rnn, next(model.parameters()).device
    return (f"charrnn app: model {source} ({model.cell.upper()} {rnn.num_layers}x{rnn.hidden_size}, "
            f"{len(model.vocab)} chars), device {device}, serving {serving}, "
            f"{torch.get_num_threads()} torch thread(s), {describe_precision(model.precision, device)}, "
            f"FORWARDED_ALLOW_IPS={os.environ.get('FORWARDED_ALLOW_IPS', '127.0.0.1')}")


def main(argv=None, engine_maker: Callable[[CharRNN], Engine] | None = None) -> None:
    """`charrnn app`; engine_maker(model) gives another generation engine (bench/solo.py's)."""
    p = argparse.ArgumentParser(prog="charrnn app", description="The charrnn demo page.")
    p.add_argument("--model", default=os.environ.get("CHARRNN_MODEL", "weights"),
                   help="weights folder or Hub repo id (default: $CHARRNN_MODEL or weights)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, or $CHARRNN_DEVICE), cpu or cuda")
    p.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME, else 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT, else 7860")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16: matrix products in bfloat16; auto: per kind of work (charrnn/precision.py)")
    args = p.parse_args(argv)
    configure("step")  # one-char steps are small: see charrnn/threads.py and charrnn/engine.py
    sys.setswitchinterval(GIL_SWITCH_S)
    model, error = load(args.model, args.device, args.precision)
    print(describe(model, args.model, error, "engine" if engine_maker is None else "another engine (bench)"),
          flush=True)
    serve(build_demo(model, args.model, error, engine_maker), args.host, args.port, show_error=True)
