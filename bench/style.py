"""Write like this text (charrnn/style.py): does reading a passage adapting make the model read the
passage's continuation better, by how much, and what does each model write?

For each text: the model reads its first --adapt-chars chars adapting (the Read tab's dynamic
evaluation, on a copy), then the next --score-chars chars are scored statically, from a fresh
state, by the adapted copy and by the unadapted model. Samples: both continue the first 40 chars
of that continuation, greedy and sampled (temperature 0.8, sampling seed 1).

The texts (sources):
- novel: chars from --offset of the novel's validation split (the last 20% of el_quijote.txt,
  Cervantes, 1605/1615, public domain), which the model never trained on;
- carta: a modern personal letter in Spanish, bench/texts/carta.txt;
- noticia: a local news report in Spanish, bench/texts/noticia.txt;
- english: a short story in English (a language the model never saw), bench/texts/english.txt.
The last three were written for this benchmark by the charrnn project (2026) and are released
with it under its MIT licence; they describe no real people or events.

    flock /work/cpu.lock python bench/style.py                     # ~1 min on a 2-core CPU
    python bench/style.py --weights DIR --data FILE --adapt-chars 300 --score-chars 200 \
        --results /tmp/R.md  # a smoke run
"""
import sys
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from bench import common
from charrnn import load_model
from charrnn.adaptive import Adapt
from charrnn.data import find_corpus, load_text, split
from charrnn.generate import Settings, complete
from charrnn.score import score
from charrnn.style import ADAPT, read_passage

TEXTS = Path(__file__).resolve().parent / "texts"
OWN_TEXTS = {"carta": "a modern letter (Spanish)", "noticia": "a news report (Spanish)",
             "english": "a short story (English)"}
SEED_CHARS = 40


def texts(model, data: str | None, offset: int, need: int) -> dict[str, tuple[str, str]]:
    """{name: (what it is, text)}: the novel's validation passage first, then bench/texts/."""
    val = split(model.vocab.normalize(load_text(data or find_corpus())))[1]
    start = offset if len(val) >= offset + need else 0
    found = {"novel": (f"the novel's validation split, chars {start:,}+", val[start: start + need])}
    for name, what in OWN_TEXTS.items():
        text = model.vocab.normalize((TEXTS / f"{name}.txt").read_text(encoding="utf-8"))
        if len(text) < need:
            raise SystemExit(f"bench/texts/{name}.txt has {len(text):,} chars; this run needs {need:,}")
        found[name] = (what, text[:need])
    return found


def nats(model, text: str) -> float:
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    return score(model, ids).nats_per_char


def measure_text(model, text: str, adapt_chars: int, lrs: list[float]) -> dict:
    """Adapt on the first part at each lr; score the rest with each adapted copy and the model; samples."""
    first, rest = text[:adapt_chars], text[adapt_chars:]
    row = {"unadapted": nats(model, rest), "adapted": [], "reading": None}
    seed = rest[:SEED_CHARS]
    settings = Settings(length=240, temperature=0.8, sampling_seed=1)
    row["samples"] = {"unadapted": complete(model, seed, settings), "seed": seed}
    for i, lr in enumerate(lrs):
        adapted, how = read_passage(model, first, Adapt(lr=lr))
        row["adapted"].append(nats(adapted, rest))
        if i == 0:  # the Read tab's settings: its reading and its samples are the ones shown
            row["reading"], row["samples"]["adapted"] = how, complete(adapted, seed, settings)
    return row


def report(args, lrs: list[float], rows: dict, found: dict) -> str:
    headers = ["text", "what", "unadapted", *[f"adapted, lr {lr:g}" for lr in lrs], "gain (first lr)",
               "while reading: start → end (unadapted end)"]
    table = []
    for name, row in rows.items():
        how, gain = row["reading"], row["unadapted"] - row["adapted"][0]
        table.append([name, found[name][0], f"{row['unadapted']:.3f}", *[f"{a:.3f}" for a in row["adapted"]],
                      f"{gain:+.3f} ({gain / row['unadapted']:.1%})",
                      f"{how.start:.3f} → {how.end:.3f} ({how.end_unadapted:.3f})"])
    what = (f"nats/char on the {args.score_chars:,} chars that follow the first {args.adapt_chars:,} of each "
            f"text, "
            f"read from a fresh state by the unadapted model and by its copy adapted on those first chars "
            f"(`charrnn.style.read_passage`: Adam on the last LSTM layer and the output layer, 96-char "
            f"chunks; "
            f"the Write tab adapts at lr {ADAPT.lr:g}, the Read tab at {Adapt.lr:g}). *While reading*: the "
            f"adaptive read of the first part, its first and last quarter (at most 1,000 chars each), and "
            f"the "
            f"unadapted model on that last quarter. Weights: `{args.weights}`. The texts' sources: the "
            f"docstring of `bench/style.py`. One torch thread.")
    samples = "\n\n".join(sample_block(name, row["samples"]) for name, row in rows.items())
    notes = (f"CPU (lscpu): {common.lscpu_line()}\n\nWhat each writes after the first {SEED_CHARS} chars of "
             f"the continuation (greedy; sampled at 0.8, sampling seed 1; the adapted copy at lr {lrs[0]:g}):"
             f"\n\n{samples}")
    return common.section("Write like this text: adapting on a passage, then reading its continuation", what,
                          common.table(headers, table), notes)


def sample_block(name: str, samples: dict) -> str:
    def show(text: str) -> str:
        return text.replace("\n", "⏎")

    lines = [f"**{name}**, seed `{show(samples['seed'])}`", ""]
    for who in ("unadapted", "adapted"):
        out = samples[who]
        lines += [f"- {who}, greedy: `{show(out.greedy)}`", f"- {who}, sampled: `{show(out.sampled)}`"]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--data", default=None, help="the corpus (default: the one train.py finds)")
    p.add_argument("--offset", type=int, default=20_000,
                   help="where in the validation split the novel's text starts")
    p.add_argument("--adapt-chars", type=int, default=2000)
    p.add_argument("--score-chars", type=int, default=2000)
    p.add_argument("--lrs", default=f"{ADAPT.lr:g},{Adapt.lr:g}",
                   help="adaptation learning rates; the first is shown in samples "
                        "(default: the Write tab's, the Read tab's)")
    args = common.parse(p, argv)
    torch.set_num_threads(1)  # as the app runs
    lrs = [float(x) for x in args.lrs.split(",")]
    model = load_model(args.weights, "cpu")
    found = texts(model, args.data, args.offset, args.adapt_chars + args.score_chars)
    rows = {name: measure_text(model, text, args.adapt_chars, lrs) for name, (_, text) in found.items()}
    body = report(args, lrs, rows, found)
    print(body)
    common.write_section("style", body, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
