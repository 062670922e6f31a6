"""Quality of the shipped weights: validation loss (nats and bits per char), how much greedy output
repeats itself (share of repeated 20-grams in 1,000 greedy chars; the tutorial's greedy output
loops), and the share of sampled words (temperature 0.8) that are words of the novel.

    python bench/quality.py                                  # ~3 min
    python bench/quality.py --compare "PyTorch recipe"=runs/bench/pytorch   # side by side
    python bench/quality.py --weights DIR --data tiny.txt --length 100 --samples 1 --windows 50 \
        --results /tmp/R.md                                  # smoke

(--compare takes folders that train_quality --save-dir wrote.)
"""
import argparse
import math
import re
import sys
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch

from bench import common
from bench.train_quality import last_char_loss
from charrnn import load_model
from charrnn.data import find_corpus, load_text, split
from charrnn.generate import Settings, complete
from charrnn.validation import nats_per_char

# Seeds end in a space so the first generated word is a whole word.
SEEDS = ["En un lugar de la Mancha, ", "Dijo don Quijote a su escudero: ", "Sancho Panza respondió que "]
NGRAM = 20
WORD = re.compile(r"[^\W\d_]+")  # runs of letters, accented ones included


def repeated_share(text: str, n: int = NGRAM) -> float:
    """Share of the text's n-grams (overlapping) that already occurred earlier in it:
    0 for text that never repeats a 20-char stretch, near 1 for a loop."""
    grams = [text[i: i + n] for i in range(len(text) - n + 1)]
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / max(1, len(grams))


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def measure(model, text: str, length: int, samples: int, windows: int) -> dict:
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    val = split(ids)[1]
    nats = nats_per_char(model, val, rows=1)
    windowed, se = last_char_loss(model, val, windows)
    greedy = [complete(model, s, Settings(length=length, temperature=0)).greedy for s in SEEDS]
    lexicon = set(words(model.vocab.normalize(text)))  # the novel's words, as this model writes them
    sampled_words = []
    for i in range(samples):
        out = complete(model, SEEDS[i % len(SEEDS)],
                       Settings(length=length, temperature=0.8, sampling_seed=i))
        sampled_words += words(out.sampled)[:-1]  # the last word may be cut off by the length
    return dict(nats=nats, windowed=windowed, se=se, val_chars=len(val),
                repeat=sum(map(repeated_share, greedy)) / len(greedy), greedy=greedy[0],
                real=sum(w in lexicon for w in sampled_words) / max(1, len(sampled_words)),
                n_words=len(sampled_words), accents="stripped" if model.vocab.strip_accents else "kept")


def parse_args(argv=None) -> tuple[argparse.Namespace, dict[str, str]]:
    """The arguments, and {table name: weights folder} of the models to measure."""
    p = common.parser(__doc__)
    p.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                   help="also measure these weights (repeatable)")
    p.add_argument("--data", default=None, help="text file (default: the project's el_quijote.txt)")
    p.add_argument("--length", type=int, default=1000, help="chars per greedy and per sampled continuation")
    p.add_argument("--samples", type=int, default=5, help="sampled continuations for the real-word share")
    p.add_argument("--windows", type=int, default=20_000,
                   help="100-char validation windows for the tutorial's own score")
    args = common.parse(p, argv)
    if args.length < NGRAM or args.samples < 1 or args.windows < 1:
        p.error(f"--length must be at least {NGRAM}, --samples and --windows positive")
    models = {f"shipped (`{args.weights}`)": args.weights}
    for c in args.compare:
        name, _, path = c.partition("=")
        if not path:
            p.error(f"--compare takes NAME=DIR, not {c!r}")
        models[f"{name} (`{path}`)"] = path
    return args, models


def notes(args: argparse.Namespace, first: dict) -> str:
    """The section's notes: how each column was measured, and the first model's greedy output."""
    excerpt = (SEEDS[0] + first["greedy"][:400]).replace("```", "'''")
    return f"""- Validation = the last 20% of the text after the model's own normalization
  ({first['val_chars']:,} chars for the shipped model), scored by `charrnn.validation.nats_per_char` with
  the state carried from its first char. The tutorial's way scores {args.windows:,} random 100-char
  windows from a zero state, only the char after each (± = standard error of that sample); the PyTorch
  tutorial's published 1.2446 is of that kind, on accent-stripped text, so it compares only with a
  model whose accents are stripped.
- Repetition: greedy continuations of {args.length:,} chars from {len(SEEDS)} seeds
  ({', '.join(repr(s) for s in SEEDS)}),
  generated statefully by `charrnn.generate`; the share of their {NGRAM}-char windows that already
  occurred earlier in the same continuation, averaged over the seeds. Lower is better; the novel's own
  prose is the floor.
- Real words: {args.samples} sampled continuations of {args.length:,} chars at temperature 0.8
  (sampling seeds 0..{args.samples - 1}); the share of their words (runs of letters, lower-cased; the
  last, possibly cut-off word of each dropped) that occur anywhere in the novel.

Greedy output of the shipped model from {SEEDS[0]!r}, first 400 chars:

```text
{excerpt}
```"""


def main(argv=None) -> int:
    args, models = parse_args(argv)
    text = load_text(args.data or find_corpus())
    print(f"{common.machine()}", flush=True)
    results = {}
    for name, path in models.items():
        results[name] = r = measure(load_model(path, "cpu"), text, args.length, args.samples, args.windows)
        print(f"  {name}: {r['nats']:.4f} nats/char, repeated {NGRAM}-grams {r['repeat']:.1%}, "
              f"real words {r['real']:.1%}", flush=True)
    # The novel's own repetition, as a floor: 1,000-char stretches of the validation text.
    val_text = split(list(text))[1]
    step = max(1, (len(val_text) - args.length) // 4)
    stretches = ["".join(val_text[i: i + args.length])
                 for i in range(0, len(val_text) - args.length + 1, step)][:5]
    novel_repeat = sum(map(repeated_share, stretches)) / max(1, len(stretches))

    headers = ["model", "accents", "val nats/char (exact)", "val bits/char",
               "val, tutorial's way (last char of 100-char windows)",
               f"repeated {NGRAM}-grams in greedy output", "sampled words that are the novel's words"]
    rows = [[name, r["accents"], f"{r['nats']:.4f}", f"{r['nats'] / math.log(2):.4f}",
             f"{r['windowed']:.4f} ± {r['se']:.3f}", f"{r['repeat']:.1%}",
             f"{r['real']:.1%} of {r['n_words']:,}"]
            for name, r in results.items()]
    rows.append(["the novel itself (validation text)", "—", "—", "—", "—", f"{novel_repeat:.1%}", "—"])
    table_md = common.table(headers, rows)
    print(table_md)
    notes_md = notes(args, next(iter(results.values())))
    common.write_section("quality", common.section(
        "Quality of the shipped weights", f"Text: `{args.data or 'el_quijote.txt'}`.", table_md, notes_md),
        args.results)
    print(f"wrote the quality section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
