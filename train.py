"""Train charrnn on Don Quijote and write Hugging Face-format weights.

    python train.py                          # default model, ~27 min on a 2-core CPU -> weights/
    python train.py --strip-accents --out runs/stripped   # the tutorials' accent-free text
    python train.py --resume                 # continue after Ctrl-C
    python train.py --push-to-hub OWNER/NAME # also upload weights + model card
"""
import argparse
import shlex
import sys
from dataclasses import fields, replace
from pathlib import Path

from charrnn.training import RECIPES, SHORT_BUDGET, TrainConfig

HELP = {
    "data": "UTF-8 text file or folder of .txt files (default: el_quijote.txt from the cache, ../shared/data, "
            "or downloaded and hash-checked)",
    "dataset": "a Hugging Face dataset instead of --data: a folder written by save_to_disk, or a Hub dataset id "
               "(its train split)",
    "dataset_config": "with --dataset: the dataset's configuration name",
    "text_column": "with --dataset: the column that holds the text",
    "max_eval_chars": "evaluations read at most this many validation chars, from the start of the split "
                      "(the default corpus's 204k are all read)",
    "strip_accents": "strip accents (á->a, ñ->n) as the tutorials effectively did, so losses compare",
    "cell": "recurrent cell: lstm or gru",
    "max_minutes": "training-time budget; the lr schedule ends at the budget or --epochs, whichever comes first",
    "device": "auto (cuda if available, else cpu), cpu or cuda",
    "out": "folder for config.json, model.safetensors, README.md, metrics.jsonl, loss.png, checkpoint.pt",
}
SAMPLE_SEEDS = ["En un lugar de la Mancha", "–¿Qué gigantes? –dijo Sancho Panza.", "Dulcinea del Toboso"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in fields(TrainConfig):
        flag, text = "--" + f.name.replace("_", "-"), HELP.get(f.name, f.name.replace("_", " "))
        default, example = f.default, RECIPES["short"].get(f.name, f.default)
        if f.name in RECIPES["short"]:  # None: the recipe for the budget picks it
            short, long = RECIPES["short"][f.name], RECIPES["long"][f.name]
            text += f" (default: {short} for --max-minutes up to {SHORT_BUDGET:g}, else {long})"
            default = argparse.SUPPRESS  # absent from args: left to the recipe
        if f.type is bool:
            p.add_argument(flag, action="store_true", help=text)
        elif f.name == "cell":
            p.add_argument(flag, choices=["lstm", "gru"], default=default, help=text)
        else:  # int and float fields parse as such; the rest (paths, device) are strings
            kind = type(example) if type(example) in (int, float) else str
            p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME", help="upload the weights folder with its model card")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create a private repo")
    return p.parse_args(argv)


def to_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed flags; the recipe fields left out stay None for the budget to pick."""
    return TrainConfig(**{f.name: getattr(args, f.name, None) for f in fields(TrainConfig)})


def main(argv=None) -> int:
    args = parse_args(argv)
    # Imports after argument parsing: --help should not wait for torch.
    from charrnn.data import DataError
    from charrnn.device import resolve_device
    from charrnn.hub import first_line, push
    from charrnn.training import Interrupted, train

    cfg = to_config(args)
    if args.push_to_hub and args.push_to_hub.count("/") != 1:
        return fail(f"--push-to-hub needs OWNER/NAME, not {args.push_to_hub!r}")
    try:
        device = resolve_device(cfg.device)
        summary = train(cfg, resume=args.resume, device=device)
    except Interrupted as e:
        print(f"\nStopped: {e}. Continue with: python train.py --resume --out {shlex.quote(cfg.out)}", file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError) as e:
        return fail(str(e))

    out = Path(cfg.out)
    write_outputs(summary, out, reproduce_command(summary["config"]), args.push_to_hub or str(out))
    print(f"wrote {out}/: config.json, model.safetensors, README.md, metrics.jsonl, loss.png")
    print(f"val loss {summary['val_loss']:.4f} nats/char; try: python -m charrnn.sample --weights {out} "
          f"--seed-text 'En un lugar de la Mancha'")
    if args.push_to_hub:
        try:
            url = push(out, args.push_to_hub, private=args.private)
        except Exception as e:  # no network, no token, no permission: the local files are safe
            return fail(f"could not push to {args.push_to_hub}: {first_line(e)}. Everything is saved in {out}/; "
                        f"push it later with: python -m charrnn.hub {shlex.quote(str(out))} {args.push_to_hub}")
        print(f"pushed to {url}")
    return 0


def reproduce_command(cfg: TrainConfig) -> str:
    """The train.py command for this config: its settings that differ from the defaults
    (also right for a resumed run, whose own command line was only --resume)."""
    # What train.py gives without flags, except that the recipe is the one for this run's budget.
    default = replace(TrainConfig(max_minutes=cfg.max_minutes).resolve(), max_minutes=TrainConfig.max_minutes)
    args = []
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name == "device" or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        args += [flag] if value is True else [flag, shlex.quote(str(value))]
    return " ".join(["python train.py", *args])


def write_outputs(summary: dict, out: Path, command: str, load_from: str) -> None:
    """Weights, loss plot and model card (with samples) of a finished run, into `out`."""
    from charrnn.generate import Settings, complete
    from charrnn.hub import model_card, plot_losses, save_weights

    model, cfg = summary["model"], summary["config"]
    save_weights(model, out)
    title = f"{cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}: best val {summary['val_loss']:.4f} nats/char"
    plot_losses(summary["history"], out / "loss.png", title, summary.get("corpus"))
    samples = [(o.seed, o.sampled) for o in (complete(model, seed, Settings(length=300, temperature=0.8,
                                                                          sampling_seed=i))
                                             for i, seed in enumerate(SAMPLE_SEEDS))]
    (out / "README.md").write_text(model_card(summary, samples, command, load_from), encoding="utf-8")


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
