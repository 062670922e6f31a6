"""How long the Read tab's `/score` takes on a pasted passage (issue 13: static, 5,000 chars, under
1 s), against the model's own read of the same text in this process, and whether the app's total
agrees with `python -m charrnn.evaluate` on the same text.

Rounds alternate the three timings (the app through gradio_client, `text_reading.read` here with one
torch thread as the app runs it, and one forward pass with the layers one after the other, as the
static read was before its layer pipeline), so a change in the machine's speed reaches all three.

    flock /tmp/charrnn-cpu.lock python bench/read_latency.py          # ~2 min
    python bench/read_latency.py --weights DIR --data FILE --chars 300 --runs 2 --results /tmp/R.md   # smoke
"""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from gradio_client import Client

from bench import common
from charrnn import load_model
from charrnn.data import find_corpus, load_text, split
from charrnn.model import target_logprobs
from charrnn.text_reading import read


def passage(model, data: str | None, offset: int, chars: int) -> tuple[int, str]:
    """Where it starts and `chars` chars of the corpus's validation split from `offset` (from its start
    when the split is shorter), normalized as the model reads them."""
    val = split(model.vocab.normalize(load_text(data or find_corpus())))[1]
    start = offset if len(val) >= offset + chars else 0
    return start, val[start: start + chars]


@torch.inference_mode()
def one_pass(model, text: str) -> torch.Tensor:
    """The text in one forward pass, the layers one after the other: the static read before its pipeline."""
    ids = torch.tensor(model.vocab.encode(text, errors="drop"))
    logits, _, _ = model(ids[:-1][None])  # (1, T, V)
    return target_logprobs(logits, ids[1:][None])


def cli_summary(weights: str, text: str) -> dict:
    """What `python -m charrnn.evaluate` prints for the text, run as a user runs it."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write(text)
    proc = subprocess.run([sys.executable, "-m", "charrnn.evaluate", "--weights", weights, "--data", f.name],
                          cwd=common.ROOT, capture_output=True, text=True, check=True)
    Path(f.name).unlink()
    return json.loads(proc.stdout)


def measure(args) -> dict:
    torch.set_num_threads(1)  # as app.py runs
    model = load_model(args.weights, "cpu")
    start, text = passage(model, args.data, args.offset, args.chars)
    times = {"app": [], "read": [], "one_pass": []}
    with common.App(args.weights) as app:
        client = Client(app.url, verbose=False, analytics_enabled=False, download_files=False)
        call = lambda: client.predict(text, False, api_name="/score")  # noqa: E731
        timed = {"app": call, "read": lambda: read(model, text), "one_pass": lambda: one_pass(model, text)}
        for fn in timed.values():  # warm-up: the first call in a process pays for allocations
            fn()
        for _ in range(args.runs):
            for name, fn in timed.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1000)
        app_json = call()[2]
    return dict(start=start, text=text, times=times, app=app_json, cli=cli_summary(args.weights, text))


def report(args, run: dict) -> str:
    t, n = run["times"], len(run["text"])
    row = lambda name, what: [what, f"{statistics.median(t[name]):,.0f}",  # noqa: E731
                              ", ".join(f"{x:,.0f}" for x in t[name])]
    table = common.table(["what", "median ms", "each run, ms"], [
        row("app", f"`/score` static through gradio_client ({n:,} chars)"),
        row("read", "`text_reading.read` in this process, 1 torch thread (the model's part of it)"),
        row("one_pass", "one forward pass, layers one after the other, 1 thread (before the pipeline)")])
    app, cli = run["app"]["nats_per_char"], run["cli"]["nats_per_char"]
    notes = (f"The app's total: {app:.5f} nats/char; `python -m charrnn.evaluate` on the same text: "
             f"{cli:.5f} ({'the same' if round(app, 5) == round(cli, 5) else 'DIFFERENT'}). Issue 13's "
             f"target: under 1,000 ms for 5,000 chars. The app's overhead over its read: "
             f"{statistics.median(t['app']) - statistics.median(t['read']):,.0f} ms (medians).")
    what = (f"Validation chars {run['start']:,} to {run['start'] + n:,} of the corpus, {args.runs} rounds "
            "after a warm-up, the three timings alternating; `python app.py` on loopback, nothing else "
            "running.")
    return common.section("Reading a pasted text: the Read tab's /score", what, table, notes)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--data", default=None, help="the corpus (default: the one train.py finds)")
    p.add_argument("--chars", type=int, default=5000)
    p.add_argument("--offset", type=int, default=5000,
                   help="where in the validation split the passage starts")
    p.add_argument("--runs", type=int, default=7)
    return common.measure_and_write("read_latency", p, argv, measure, report)


if __name__ == "__main__":
    sys.exit(main())
