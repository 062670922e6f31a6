"""Generation speed of the shipped model on this CPU: 500 greedy + 500 sampled chars by
(a) our stateful generator (greedy and sampled rows in one batch), (b) the PyTorch tutorial's
method (re-read the last 100 chars from a zero state for every new char), (c) our stateful steps
with greedy and sampled run one after the other. Median of several runs; plus the app's memory.

    python bench/generate.py                 # ~3 min
    python bench/generate.py --weights DIR --runs 1 --length 20 --results /tmp/R.md   # smoke
"""
import argparse
import sys
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from bench import common
from charrnn import load_model
from charrnn.generate import Settings, complete, make_step, prefill, prepare_seed

# The novel's opening (public domain), longer than the tutorial's 100-char window so every
# re-encoding step reads a full window.
SEED = ("En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía un "
        "hidalgo de los de lanza en astillero, adarga antigua, rocín flaco y galgo corredor.")
TEMPERATURE = 0.8
WINDOW = 100


def ours_batched(model, seed: str, n: int) -> None:
    """(a) What the app runs: charrnn.generate, greedy and sampled as one batch of 2."""
    complete(model, seed, Settings(length=n, temperature=TEMPERATURE, sampling_seed=0))


def pick(logits: torch.Tensor, temperature: float, gen: torch.Generator) -> int:
    """Greedy at temperature 0, else a draw from softmax(logits / temperature). logits (V,)"""
    if temperature == 0:
        return int(logits.argmax())
    return int(torch.multinomial((logits.float() / temperature).softmax(-1), 1, generator=gen))


@torch.inference_mode()
def tutorial_reencode(model, ids: list[int], n: int) -> None:
    """(b) The PyTorch tutorial's loop: every new char re-reads the last 100 chars from a zero state."""
    gen = torch.Generator().manual_seed(0)
    for temperature in (0.0, TEMPERATURE):  # greedy, then sampled
        text = list(ids)
        for _ in range(n):
            logits, _, _ = model(torch.tensor([text[-WINDOW:]]))  # (1, <=100, V)
            text.append(pick(logits[0, -1], temperature, gen))


@torch.inference_mode()
def ours_one_after_other(model, ids: list[int], n: int) -> None:
    """(c) Our stateful one-char steps (charrnn.generate.make_step), batch of 1, greedy then sampled:
    what batching the two rows saves."""
    gen = torch.Generator().manual_seed(0)
    step = make_step(model)
    for temperature in (0.0, TEMPERATURE):
        logits, layers = prefill(model, torch.tensor([ids]))  # (1, V), the seed prefilled once
        for _ in range(n):
            nxt = pick(logits[0], temperature, gen)
            logits, layers = step(torch.tensor([nxt]), layers)


def app_memory(weights: str) -> dict[str, float]:
    """Resident memory of `python app.py` once it serves its page: now and peak (MB)."""
    with common.App(weights) as app:
        return {**common.rss_mb(app.proc.pid), "start_s": app.start_s}


def parse_args(argv=None) -> argparse.Namespace:
    p = common.parser(__doc__)
    p.add_argument("--runs", type=int, default=5, help="timed runs of each method (median reported)")
    p.add_argument("--length", type=int, default=500, help="chars per continuation (greedy and sampled each)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (the app uses 1: one-char steps are latency-bound)")
    p.add_argument("--no-app", action="store_true", help="skip starting app.py for its memory")
    args = common.parse(p, argv)
    if args.runs < 1 or args.length < 1 or args.threads < 1:
        p.error("--runs, --length and --threads must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.weights, "cpu")
    seed, _ = prepare_seed(model, SEED)
    ids = model.vocab.encode(seed)
    n = args.length
    print(f"{model.cell.upper()} {model.rnn.num_layers}x{model.rnn.hidden_size}, {model.num_params():,} "
          f"params; {n} greedy + {n} sampled chars, median of {args.runs}; {common.machine()}", flush=True)
    methods = {
        "(a) ours: stateful, greedy + sampled batched": lambda: ours_batched(model, SEED, n),
        "(b) PyTorch tutorial: re-read last 100 chars per char": lambda: tutorial_reencode(model, ids, n),
        "(c) ours: stateful, greedy then sampled": lambda: ours_one_after_other(model, ids, n),
    }
    times = {}
    for name, fn in methods.items():
        times[name], all_runs = common.median_ms(fn, args.runs)
        runs = ", ".join(f"{t:.0f}" for t in all_runs)
        print(f"  {name}: {times[name]:,.1f} ms (runs: {runs})", flush=True)
    base = times[next(iter(methods))]
    rows = [[name, f"{ms:,.1f}", f"{ms / (2 * n):.3f}", f"{ms / base:.1f}x"] for name, ms in times.items()]
    table_md = common.table(["method", f"ms for {n} greedy + {n} sampled chars (median)", "ms per char",
                             "time ÷ (a)"], rows)
    print(table_md)

    mem_rows = [["this benchmark process (torch + model, no gradio)", f"{common.rss_mb_self():,.0f}", "—"]]
    if not args.no_app:
        mem = app_memory(args.weights)
        mem_rows.append([f"`python app.py` after it serves its page ({mem['start_s']:.1f} s to start)",
                         f"{mem['VmRSS']:,.0f}", f"{mem['VmHWM']:,.0f}"])
    mem_md = common.table(["process", "RSS now (MB)", "peak RSS (MB)"], mem_rows)
    print(mem_md)

    speedup = times[list(methods)[1]] / base
    notes = f"""- Re-encoding (b) is {speedup:.0f}x slower than (a) (target: at least 50x); running greedy and
  sampled one after the other (c) costs {times[list(methods)[2]] / base:.2f}x the batched time.
- Same model and seed ({len(ids)} chars, the novel's opening) for every method; sampled at temperature
  {TEMPERATURE}; {args.threads} torch thread(s), as the app runs; one untimed warm-up run each.
- Memory is read from /proc (VmRSS, VmHWM) of the app process right after its page answers."""
    common.write_section("generate", common.section(
        "Generation speed and memory",
        f"{model.cell.upper()} {model.rnn.num_layers}x{model.rnn.hidden_size} ({model.num_params():,} "
        f"parameters) from `{args.weights}`, CPU.",
        table_md + "\n\n" + mem_md, notes), args.results)
    print(f"wrote the generate section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
