"""Print a continuation of a seed text:

    python -m charrnn.sample --weights weights --seed-text "En un lugar de la Mancha" --length 300

Prints the sampled continuation (seed included) as it is generated; --greedy prints the greedy
one instead, --both prints both under headings. Notices about the seed go to stderr.
"""
import argparse
import os
import sys

from .cli import DefaultsHelpFormatter, prog
from .device import resolve_device
from .generate import MAX_LENGTH, STOPS, check_settings, stream
from .precision import PRECISIONS, describe, use
from .pretrained import load_model
from .threads import configure
from .weights import WeightsError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog("charrnn.sample"), description=__doc__.split("\n")[0],
                                formatter_class=DefaultsHelpFormatter)
    p.add_argument("--weights", default="weights",
                   help="folder with config.json + model.safetensors, or a Hub repo id")
    p.add_argument("--seed-text", default="", help="beginning of the text (empty: start from a new line)")
    p.add_argument("--length", type=int, default=300, help=f"new chars, 1 to {MAX_LENGTH}")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more adventurous")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest chars only (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0,
                   help="sample within this much probability mass (1 = off)")
    p.add_argument("--sampling-seed", type=int, default=None,
                   help="same sampling seed + same settings = same text")
    p.add_argument("--stop-at", choices=sorted(STOPS), default=None,
                   help="stop at the end of a sentence or paragraph")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--greedy", action="store_true",
                       help="print the greedy continuation (most likely char each step)")
    which.add_argument("--both", action="store_true", help="print the greedy and the sampled continuations")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, or $CHARRNN_DEVICE), cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16: the steps' matrix products in bfloat16; auto: bf16 on CUDA, fp32 on CPUs, "
                        "where bf16 steps measured slower (charrnn/precision.py)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    configure("step")  # one char per step is latency-bound: extra threads only add sync overhead
    try:
        settings = check_settings(args.length, args.temperature, args.top_k, args.top_p, args.sampling_seed,
                                  args.stop_at)
        device = resolve_device(args.device)
        model = load_model(args.weights, device)
    except (ValueError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    use(model, args.precision)
    print(f"note: {describe(args.precision, device)}", file=sys.stderr)
    if args.both:  # two texts cannot interleave on one stdout: print them when done
        *_, out = stream(model, args.seed_text, settings, every=MAX_LENGTH + 1)
        _notices(out)
        print(f"--- greedy ---\n{out.seed}{out.greedy}\n--- sampled (temperature {settings.temperature}, "
              f"sampling seed {out.sampling_seed}) ---\n{out.seed}{out.sampled}")
        return 0
    shown = None
    try:
        for out in stream(model, args.seed_text, settings, every=1, interval=0.05):
            if shown is None:
                _notices(out)
                sys.stdout.write(out.seed)
                shown = 0
            text = out.greedy if args.greedy else out.sampled
            sys.stdout.write(text[shown:])
            sys.stdout.flush()
            shown = len(text)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        sys.stdout = open(os.devnull, "w")
        return 0
    if not args.greedy and args.sampling_seed is None:
        print(f"(sampling seed {out.sampling_seed}: pass --sampling-seed {out.sampling_seed} to get this "
              "text again)",
              file=sys.stderr)
    return 0


def _notices(out) -> None:
    for notice in out.notices:
        print(f"note: {notice}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
