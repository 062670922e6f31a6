"""Speed by torch thread count and OpenMP wait policy, on a quiet machine and beside one busy process
(issue 23, item 1): the default must keep >= 80% of the best of 1 or 2 threads beside a busy
process, and >= 95% of it on a quiet machine.

Each setting runs in a fresh process (OpenMP reads its settings when torch loads), for --seconds per
workload: `train` is the long recipe's training step (LSTM 2x512, 16 x 128 chars, AdamW, clipping),
`read` the static read of `charrnn.score` (a 2-layer LSTM 2x512 reading 2,048-char texts),
`step` the engine's one-char step at 64 rows. "Busy" starts one Python loop spinning beside it.
Rounds interleave the settings and both cases, so a change in the machine's load reaches them all.

    flock /work/cpu.lock python bench/threads.py            # ~5 min
    python bench/threads.py --seconds 0.5 --rounds 1 --results /tmp/R.md   # smoke
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common

WORKS = ("train", "read", "step")
# label -> (environment, whether the child imports torch before charrnn so the package sets nothing)
SETTINGS = {
    "1 thread": ({"OMP_NUM_THREADS": "1"}, True),
    "2 threads, spinning waits (torch's own default)": ({"OMP_NUM_THREADS": "2"}, True),
    "2 threads, passive waits": ({"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}, True),
    "charrnn's default": ({}, False),
}
DEFAULT = "charrnn's default"
OPENMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "KMP_BLOCKTIME")
SPINNER = "while True: pass"


# ---- the child: one setting, every workload ---------------------------------------------------

def child(works: list[str], seconds: float, torch_first: bool) -> dict:
    """chars/s of each workload in this process, as the entry points would run it."""
    if torch_first:  # before charrnn: the package then leaves OpenMP as this setting has it
        importlib.import_module("torch")
    threads = importlib.import_module("charrnn.threads")  # else before torch, as in every entry point
    import torch

    from charrnn.config import TrainConfig
    from charrnn.text import Vocab
    from charrnn.training import build_model

    cfg = TrainConfig()  # the long recipe
    vocab = Vocab("".join(chr(c) for c in range(32, 117)))  # 85 chars, as the novel's
    torch.manual_seed(0)
    model = build_model(cfg, vocab)
    out = {"threads": {}, "wait": os.environ.get("OMP_WAIT_POLICY", "libgomp's default")}
    for work in works:
        if not torch_first:  # as the entry points do (the static read: a thread per layer)
            threads.configure(work, cfg.num_layers if work == "read" else 1)
        out["threads"][work] = torch.get_num_threads()
        run_once, chars = WORKLOADS[work](cfg, model)
        run_once()  # the first call pays for lazy allocations
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds:
            run_once()
            n += 1
        out[work] = n * chars / (time.perf_counter() - t0)
    return out


def train_work(cfg, model):
    import torch

    from charrnn.model import detach_state
    from charrnn.training import build_optimizer, train_step

    optimizer, carried = build_optimizer(cfg, model), [None]
    x = torch.randint(0, len(model.vocab), (cfg.batch_size, cfg.seq_len))  # (B, T)
    y = torch.roll(x, -1, 1)  # (B, T)

    def run_once():
        model.train()
        state, _ = train_step(model, model, optimizer, x, y, carried[0], cfg.grad_clip)
        carried[0] = detach_state(state)
    return run_once, x.numel()


def read_work(cfg, model, chars: int = 2048):
    import torch

    from charrnn.score import score

    ids = torch.randint(0, len(model.vocab), (chars,))
    return (lambda: score(model.eval(), ids)), chars - 1


def step_work(cfg, model, rows: int = 64):
    import torch

    from charrnn.generate import make_step

    step = make_step(model.eval())
    ids = torch.randint(0, len(model.vocab), (rows,))  # (B,)
    zero = torch.zeros(rows, cfg.hidden_size)  # (B, H)
    layers = [(zero, zero)] * cfg.num_layers

    def run_once():
        with torch.inference_mode():
            step(ids, layers)
    return run_once, rows


WORKLOADS = {"train": train_work, "read": read_work, "step": step_work}


# ---- the parent: settings x cases x rounds ------------------------------------------------------

def run_child(label: str, works: list[str], seconds: float) -> dict:
    env, torch_first = SETTINGS[label]
    clean = {k: v for k, v in os.environ.items() if k not in OPENMP_VARS}
    argv = [sys.executable, __file__, "--child", "--works", ",".join(works), "--seconds", str(seconds)]
    proc = subprocess.run(argv + (["--torch-first"] if torch_first else []), env={**clean, **env},
                          cwd=common.ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{label}: the child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class Spinner:
    """One Python process spinning on a core for as long as the `with` block lasts."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", SPINNER])
        time.sleep(0.3)  # running before the measured process starts
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure(args) -> dict:
    """results[case][label] = list of child results, over rounds; settings rotate each round."""
    labels, results = list(SETTINGS), {"quiet": {}, "busy": {}}
    for r in range(args.rounds):
        order = labels[r % len(labels):] + labels[: r % len(labels)]
        for case in (("quiet", "busy") if r % 2 == 0 else ("busy", "quiet")):
            for label in order:
                if case == "busy":
                    with Spinner():
                        got = run_child(label, args.works, args.seconds)
                else:
                    got = run_child(label, args.works, args.seconds)
                results[case].setdefault(label, []).append(got)
                print(f"round {r + 1} {case:5} {label}: "
                      + ", ".join(f"{w} {got[w]:,.0f}" for w in args.works), flush=True)
    return results


def summarize(results: dict, works: list[str]) -> tuple[str, list[str]]:
    """The table (median chars/s per setting, case and workload) and the default's ratio to the best."""
    rows, verdicts = [], []
    for case, by_label in results.items():
        medians = {label: {w: statistics.median(g[w] for g in got) for w in works}
                   for label, got in by_label.items()}
        for label, m in medians.items():
            first = by_label[label][0]
            threads = "/".join(str(first["threads"][w]) for w in works)
            rows.append([case, label, f"{threads}, {first['wait']}", *(f"{m[w]:,.0f}" for w in works)])
        target = 0.8 if case == "busy" else 0.95
        for w in works:
            best_label = max((lb for lb in medians if lb != DEFAULT), key=lambda lb: medians[lb][w])
            ratio = medians[DEFAULT][w] / medians[best_label][w]
            verdict = "met" if ratio >= target else "NOT met"
            verdicts.append(f"- {case}, {w}: the default reaches {ratio:.2f} of the best setting "
                            f"({best_label}); target >= {target:.2f}: {verdict}.")
    headers = ["case", "setting", f"threads ({'/'.join(works)}), wait", *(f"{w} chars/s" for w in works)]
    return common.table(headers, rows), verdicts


def main(argv=None) -> int:
    p = common.parser(__doc__, weights=None)
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per workload per run")
    p.add_argument("--rounds", type=int, default=3, help="rounds over every setting and both cases")
    p.add_argument("--works", type=lambda s: s.split(","), default=list(WORKS),
                   help="comma-separated: train,read,step")
    p.add_argument("--spin-counts", type=lambda s: [int(n) for n in s.split(",")], default=[],
                   help="also 2 threads that spin this many times before they sleep (GOMP_SPINCOUNT), "
                        "comma-separated")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torch-first", action="store_true", help=argparse.SUPPRESS)
    args = common.parse(p, argv)
    if args.child:
        print(json.dumps(child(args.works, args.seconds, args.torch_first)))
        return 0
    for n in args.spin_counts:
        spin = {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": f"{n}"}
        SETTINGS[f"2 threads, GOMP_SPINCOUNT={n}"] = (spin, True)
    table_md, verdicts = summarize(measure(args), args.works)
    print(table_md + "\n" + "\n".join(verdicts))
    common.write_section("threads", common.section(
        "Threads: a quiet machine and one busy process beside it (issue 23)", WHAT.format(**vars(args)),
        table_md, "\n".join(verdicts) + "\n\n" + NOTES), args.results)
    return 0


WHAT = """Median chars/s over {rounds} interleaved rounds of {seconds:g} s per workload, each setting in a
fresh process. train: the long recipe's training step (chars = 16 x 128 per step); read: the static read of
charrnn.score over 2,048-char texts; step: the engine's one-char step at 64 rows (chars = rows).
"busy": one `python -c "while True: pass"` process runs beside it."""
NOTES = """"quiet" is only as quiet as the machine was: on a shared machine other programs (other
sessions' test runs) ran beside every case, so "quiet" is a loaded machine too and "busy" one more
process on top. The rule measured (charrnn/threads.py): OpenMP threads wait passively
(OMP_WAIT_POLICY=PASSIVE, set before torch loads); training uses every core, the static read every
core shared among its layer threads (one each here), one-char generation steps one thread;
OMP_NUM_THREADS overrides the counts. Ratios are of medians measured
in the same run; absolute numbers vary by machine and load."""

if __name__ == "__main__":
    sys.exit(main())
