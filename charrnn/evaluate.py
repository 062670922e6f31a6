"""The `charrnn evaluate` command: score a model on a text file, and print the score as JSON.

    python -m charrnn.evaluate --split val [--adapt [--adapt-learn top]] [--mix] [--max-chars N]
prints one JSON line: {"nats_per_char", "bits_per_char", "chars", "unknown_chars", "adaptive", ...}.
The scoring itself is charrnn.score.score (static, or adaptive: charrnn/adaptive.py), the same code
the app's Read tab and training's final validation score run.
"""
import argparse
import json
import sys

import torch

from . import data
from .adaptive import LEARNABLE, Adapt
from .device import resolve_device
from .mixing import Mix
from .model import CharRNN
from .precision import PRECISIONS, describe, use
from .score import score
from .threads import configure
from .weights import WeightsError

PROGRESS_FROM = 100_000  # the CLI shows a progress bar from this many chars (static reads ~8,000 chars/s)


def _mix_from(orders: str) -> Mix:
    try:
        return Mix(orders=tuple(int(n) for n in orders.split(",")))
    except ValueError:
        raise ValueError(f"--mix-orders must be comma-separated whole numbers from 1 to 16, "
                         f"not {orders!r}") from None


def _prior_ids(model: CharRNN, prior: str) -> torch.Tensor:
    """The token ids the count model starts from: the training split of train.py's corpus, none, or a file."""
    if prior == "none":
        return torch.zeros(0, dtype=torch.long)
    text = model.vocab.normalize(data.load_text(data.find_corpus() if prior == "train" else prior))
    ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
    return data.split(ids)[0] if prior == "train" else ids


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m charrnn.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights",
                   help="folder with config.json + model.safetensors, or a Hub repo id")
    p.add_argument("--data", default=None,
                   help="UTF-8 text file to score (default: the corpus train.py finds)")
    p.add_argument("--split", choices=["all", "val"], default="all",
                   help="val: only the last 20%% (train.py's validation split)")
    p.add_argument("--max-chars", type=int, default=None,
                   help="score at most this many chars (from the start of the split)")
    p.add_argument("--adapt", action="store_true",
                   help="adaptive scoring: the model learns from each chunk after scoring it")
    p.add_argument("--adapt-lr", type=float, default=Adapt.lr,
                   help="Adam learning rate of the adaptive steps (default: %(default)s)")
    p.add_argument("--adapt-decay", type=float, default=Adapt.decay,
                   help="share of the way back to the trained weights after each step (default: %(default)s)")
    p.add_argument("--adapt-learn", choices=LEARNABLE, default=Adapt.learn,
                   help="the weights that adapt: all, top (the output layer and the last RNN layer) or head "
                        "(the output layer): fewer read faster (default: %(default)s)")
    p.add_argument("--mix", action="store_true",
                   help="adaptive scoring mixed with a count model of the prior text and the text read "
                        "(implies --adapt)")
    p.add_argument("--mix-orders", default=",".join(map(str, Mix.orders)),
                   help="context lengths of the count model mixed with the network (default: %(default)s)")
    p.add_argument("--mix-prior", default="train",
                   help="text the counts start from: 'train' (the training split of the corpus train.py "
                        "finds), 'none', or a UTF-8 text file (default: %(default)s)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16: matrix products in bfloat16; auto: bf16 where the CPU or GPU does it in "
                        "hardware, except the adaptive read's learning (charrnn/precision.py) (default: "
                        "%(default)s)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_chars is not None and args.max_chars < 2:
            raise ValueError("--max-chars must be at least 2")
        adapt = Adapt(args.adapt_lr, args.adapt_decay, mix=_mix_from(args.mix_orders) if args.mix else None,
                      learn=args.adapt_learn) \
            if args.adapt or args.mix else None
        device = resolve_device(args.device)
        model = CharRNN.from_pretrained(args.weights, map_location=device)  # the one loading path
        use(model, args.precision)
        configure("read", 1 if adapt else model.rnn.num_layers)  # the static read: a thread per layer
        path = args.data or data.find_corpus()
        text = model.vocab.normalize(data.load_text(path))
        unknown = model.vocab.unknown(text)
        ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
        if args.split == "val":
            ids = data.split(ids)[1]
        if args.max_chars is not None:
            ids = ids[: args.max_chars]
        if len(ids) < 2:
            raise ValueError(f"{path} has fewer than 2 scorable characters")
        prior = _prior_ids(model, args.mix_prior) if args.mix else None
    except (data.DataError, WeightsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"note: {describe(args.precision, device)}", file=sys.stderr)
    result = score(model, ids, adapt, progress=len(ids) >= PROGRESS_FROM, prior=prior)
    print(json.dumps(result.summary(sum(unknown.values()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
