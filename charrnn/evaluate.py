"""Score a model on a text file: mean cross-entropy per char, state carried from the first char.

    python -m charrnn.evaluate --weights weights --data ../shared/data/el_quijote.txt --split val
prints one JSON line: {"nats_per_char", "bits_per_char", "chars", "unknown_chars"}.
"""
import argparse
import json
import math
import sys

import torch

from .model import CharRNN, detach_state


@torch.no_grad()
def nats_per_char(model: CharRNN, ids: torch.Tensor, streams: int = 1, chunk: int = 2048) -> float:
    """Mean next-char cross-entropy over `ids` (1-D), in nats. Every char after the first is a target.

    streams=1 reads the text as one sequence (the exact score). streams>1 cuts it into that many
    contiguous parts read side by side: ~streams times faster, and only the first few chars of
    each part lose their context, so during training it tracks the exact score closely."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    length = (len(ids) - 1) // streams
    x_all = ids[: streams * length].view(streams, length).to(device)  # (S, L)
    y_all = ids[1: streams * length + 1].view(streams, length).to(device)  # (S, L)
    total, state = 0.0, model.init_state(streams)
    for i in range(0, length, chunk):
        y = y_all[:, i: i + chunk]  # (S, t)
        _, state, loss = model(x_all[:, i: i + chunk], state, targets=y)
        total += loss.item() * y.numel()  # the mean over this chunk back to a sum
        state = detach_state(state)
    # The leftover tail (at most streams-1 chars) is scored on its own, from the last state.
    tail_start = streams * length
    if len(ids) - 1 > tail_start:
        last = model.init_state(1) if streams > 1 else state
        y = ids[tail_start + 1:].view(1, -1).to(device)  # (1, t)
        _, _, loss = model(ids[tail_start:-1].view(1, -1).to(device), last, targets=y)
        total += loss.item() * y.numel()
    model.train(was_training)
    return total / (len(ids) - 1)


def main(argv=None) -> int:
    from .data import DataError, read_text, split
    from .device import resolve_device
    from .hub import WeightsError, load_model

    p = argparse.ArgumentParser(prog="python -m charrnn.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights", help="folder with config.json + model.safetensors, or a Hub repo id")
    p.add_argument("--data", required=True, help="UTF-8 text file to score")
    p.add_argument("--split", choices=["all", "val"], default="all", help="val: only the last 20%% (train.py's validation split)")
    p.add_argument("--max-chars", type=int, default=None, help="score at most this many chars (from the start of the split)")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    try:
        if args.max_chars is not None and args.max_chars < 2:
            raise ValueError("--max-chars must be at least 2")
        device = resolve_device(args.device)
        model = load_model(args.weights, device)
        text = model.vocab.normalize(read_text(args.data))
        unknown = model.vocab.unknown(text)
        ids = torch.tensor(model.vocab.encode(text, errors="drop"), dtype=torch.long)
        if args.split == "val":
            ids = split(ids)[1]
        if args.max_chars is not None:
            ids = ids[: args.max_chars]
        if len(ids) < 2:
            raise ValueError(f"{args.data} has fewer than 2 scorable characters")
    except (DataError, WeightsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    nats = nats_per_char(model, ids)
    print(json.dumps({"nats_per_char": round(nats, 5), "bits_per_char": round(nats / math.log(2), 5),
                      "chars": len(ids), "unknown_chars": sum(unknown.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
