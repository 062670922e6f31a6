"""The demo page (Gradio), an optional extra: `pip install charrnn-quijote[app]`.

    charrnn app [--model weights | OWNER/NAME] [--device auto|cpu|cuda] [--host H] [--port P]
    python app.py [same flags]          # the repository's entry, which Spaces run

views: pure functions from an Output / Reading to the page's HTML, Markdown and spans (no gradio).
handlers: what each event does with its raw inputs (checks, engine, reading), errors as gr.Error.
page: the Gradio Blocks layout and its events.  server: load the model, launch, the command line.
`import charrnn` never imports this package, so the library does not need gradio.
"""
import os

# Before gradio is imported: no analytics, no telemetry, no version check at start.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
