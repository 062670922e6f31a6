"""Train charrnn on Don Quijote and write Hugging Face-format weights.

`python train.py` and `charrnn train` both run main() here:

    python train.py                          # long recipe, ~27 min on a 2-core CPU -> weights/
    python train.py --max-minutes 10 --out runs/quick   # a 10-minute budget picks the short recipe
    python train.py --strip-accents --out runs/stripped   # the tutorials' accent-free text
    python train.py --resume                 # continue after Ctrl-C
    python train.py --push-to-hub OWNER/NAME # also upload weights + model card

Several processes (DistributedDataParallel; gloo between CPU processes, nccl between GPUs, one GPU
per process). Each process trains on its own --batch-size rows; rank 0 alone evaluates, writes the
checkpoint, metrics, weights and card, and pushes:
    torchrun --standalone --nproc_per_node 2 train.py --out runs/ddp           # 2 processes, this machine
    torchrun --standalone --nproc_per_node 8 train.py --device cuda            # 8 GPUs
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 train.py --device cuda          # on each of 2 machines (node_rank 0, 1)
    torchrun --standalone --nproc_per_node 2 train.py --out runs/ddp --resume  # continue (any number)
"""
import argparse
import importlib.util
import os
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from . import distributed, hub, training
from .cli import DefaultsHelpFormatter
from .config import RECIPES, RESUMABLE, SHORT_MAX_MINUTES, TrainConfig, recipe_for_budget
from .data import DataError
from .device import resolve_device
from .generate import Settings, complete
from .hub import PushError, check_can_push, push
from .precision import PRECISIONS
from .snapshots import write_best
from .threads import configure
from .weights import first_line

HELP = {
    "data": "UTF-8 text file or folder of .txt files; without it el_quijote.txt, from the cache, "
            "../shared/data, or downloaded and hash-checked",
    "dataset": "a Hugging Face dataset instead of --data: a folder written by save_to_disk, or a Hub dataset "
               "id (its train split)",
    "dataset_config": "with --dataset: the dataset's configuration name",
    "text_column": "with --dataset: the column that holds the text",
    "max_eval_chars": "evaluations read at most this many validation chars, from the start of the split "
                      "(the default corpus's 204k are all read)",
    "title": "the corpus's name on the card, the app and the Space (default: from the file, folder or "
             "dataset)",
    "description": "one line on the corpus for the card, the app and the Space (default: its file name)",
    "language": "the corpus's language as an ISO 639 code, e.g. en (default: detected from the text, "
                "'unknown' when unsure)",
    "strip_accents": "strip accents (á->a, ñ->n) as the tutorials effectively did, so losses compare",
    "recipe": f"preset of the settings marked 'from the recipe' (listed below); by default gpu on CUDA, else "
              f"short for --max-minutes up to {SHORT_MAX_MINUTES:g} and long above (here: %(default)s)",
    "cell": "recurrent cell: lstm or gru",
    "dropout": "dropout on the embedding's and the RNN's outputs and between layers",
    "locked_dropout": "one dropout mask per sequence, the same at every step (AWD-LSTM's variational "
                      "dropout)",
    "embed_dropout": "fraction of the embedding table's rows (chars) zeroed per batch",
    "weight_drop": "DropConnect on the hidden-to-hidden weights: fraction zeroed per batch",
    "ema_decay": "also score a moving average of the weights (this decay per step) at each evaluation, and "
                 "keep it when it reads better than the latest weights; 0: off",
    "warmup_frac": "fraction of the run over which the lr warms up linearly",
    "min_lr_frac": "where the cosine decay ends, as a fraction of --lr",
    "max_minutes": "the whole run's time budget, evaluations and the final score included; training and its "
                   "lr schedule end early enough for them, or at --epochs if that comes first",
    "eval_rows": "evaluations read the validation text as this many contiguous rows side by side, each "
                 "from a zero state (faster); the final score reads it as one",
    "training_seed": "the training run's random seed: initial weights, dropout masks, each epoch's chunk "
                     "offset",
    "device": "auto (cuda if available, else cpu), cpu or cuda",
    "precision": "fp32, bf16 (matrix products in bfloat16 under autocast), or auto: the steps in fp32 (bf16 "
                 "is not yet shown at the long recipe's horizon), the evaluations in bf16 where the hardware "
                 "does it (charrnn/precision.py)",
    "snapshots": "when to keep a half-precision snapshot of the weights in OUT/snapshots/ (the app's "
                 "Watch it learn tab): steps (500), epochs (epoch1), a share of the run (25%%, half), best; "
                 "or none",
    "out": "folder for config.json, model.safetensors, README.md, metrics.jsonl, loss.png, checkpoint.pt",
}
# the names these settings had before (issue 25), still accepted so that users' scripts keep working
FLAG_ALIASES = {"training_seed": ("--seed",), "eval_rows": ("--eval-streams",)}
RECIPE_FIELDS = tuple(dict.fromkeys(k for settings in RECIPES.values() for k in settings))
CARD_SAMPLES = 3  # samples on the card, each from one of the corpus's own seeds


class HelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every flag's help; the recipes table below kept as written."""


def as_flag(name: str, value) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}" if isinstance(value, str) else f"--{flag} {value:g}"


def recipes_help() -> str:
    rows = [f"  {name:6} " + ", ".join(as_flag(k, v) for k, v in settings.items())
            for name, settings in RECIPES.items()]
    return "\n".join([f"recipes (--recipe; default: gpu on CUDA, else short for --max-minutes up to "
                      f"{SHORT_MAX_MINUTES:g} and long above; a flag given with it overrides that part):",
                      *rows,
                      f"--resume applies only {', '.join('--' + n.replace('_', '-') for n in RESUMABLE)} "
                      f"(and --out, --device); other settings come from the checkpoint."])


def flags_of(name: str) -> tuple[str, ...]:
    """A TrainConfig field's flag, then its old names."""
    return ("--" + name.replace("_", "-"), *FLAG_ALIASES.get(name, ()))


def flag_given(argv: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in argv)


def flag_value(argv: list[str], flag: str) -> str | None:
    """The last value given to `flag` in argv, or None."""
    value = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def chosen_recipe(argv: list[str]) -> str:
    """--recipe if given, else the one the rule picks for --device and --max-minutes (a bad value is
    left to the parser to report; --help shows the CPU's defaults without waiting for torch)."""
    recipe = flag_value(argv, "--recipe")
    if recipe in RECIPES:
        return recipe
    device = "cpu" if {"-h", "--help"} & set(argv) else flag_value(argv, "--device") or TrainConfig.device
    try:
        minutes = float(flag_value(argv, "--max-minutes") or TrainConfig.max_minutes)
    except ValueError:
        minutes = TrainConfig.max_minutes
    return recipe_for_budget(minutes, device)


def build_parser(recipe: str) -> argparse.ArgumentParser:
    """Every TrainConfig field as a flag, its default from `recipe`."""
    defaults = TrainConfig.from_recipe(recipe)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=recipes_help(),
                                formatter_class=HelpFormatter, allow_abbrev=False)
    for f in fields(TrainConfig):
        flags, text = flags_of(f.name), HELP.get(f.name, f.name.replace("_", " "))
        default = getattr(defaults, f.name)
        if f.name in RECIPE_FIELDS:
            text += " (from the recipe)"
        if f.type is bool:  # --locked-dropout / --no-locked-dropout: a recipe may have it on
            p.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, help=text)
        elif f.name in ("cell", "recipe", "precision"):
            choices = {"cell": ["lstm", "gru"], "recipe": list(RECIPES),
                       "precision": list(PRECISIONS)}[f.name]
            p.add_argument(*flags, choices=choices, default=default, help=text)
        else:  # int and float fields parse as such; the rest (paths, device) are strings
            kind = type(default) if type(default) in (int, float) else str
            p.add_argument(*flags, type=kind, default=default, help=text)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files in --out that no charrnn run wrote "
                   "(e.g. a README.md of your own); without it such a folder is refused")
    p.add_argument("--push-to-hub", metavar="OWNER/NAME",
                   help="upload the weights folder with its model card")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create a private repo")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else list(argv)
    return build_parser(chosen_recipe(argv)).parse_args(argv)


def to_config(args: argparse.Namespace) -> TrainConfig:
    """The flags as a TrainConfig; ~ in --out and --data is the home folder, as a shell would make it."""
    settings = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    settings.update({k: os.path.expanduser(settings[k]) for k in ("out", "data") if settings[k]})
    return TrainConfig(**settings)


def given_settings(argv: list[str]) -> set[str]:
    """The TrainConfig fields set on the command line (what --resume may apply or must report)."""
    return {f.name for f in fields(TrainConfig) if any(flag_given(argv, flag) for flag in flags_of(f.name))}


TRAIN_NEEDS = ("tqdm", "matplotlib")  # of the [train] extra (pyproject.toml): the progress bar and loss.png


def missing_extras() -> list[str]:
    """The modules training needs that are not installed: found now, not when the plot is drawn."""
    return [name for name in TRAIN_NEEDS if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    missing = missing_extras()
    if missing:  # before any work: a run would otherwise train fully and die writing its plot
        return fail(f"training needs {' and '.join(missing)}, which are not installed: "
                    f'pip install "charrnn-quijote[train]"')
    cfg = to_config(args)
    configure("train")
    try:
        if args.push_to_hub and os.environ.get("RANK", "0") == "0":
            check_can_push(args.push_to_hub)  # found now, not after the training; by rank 0 alone
    except PushError as e:
        return fail(f"cannot push to {args.push_to_hub}: {e}")
    try:
        device = distributed.setup(resolve_device(cfg.device))  # under torchrun: join the other ranks
        load_from = args.push_to_hub or str(cfg.out)
        result = training.train(cfg, resume=args.resume, device=device, given=given_settings(argv),
                                overwrite=args.overwrite, write_outputs=lambda r: write_outputs(
                                    r, Path(cfg.out), reproduce_command(r.config), load_from))
    except training.Interrupted as e:
        if distributed.is_main():
            again = "the same torchrun command with" if distributed.world_size() > 1 else "python train.py"
            print(f"\nStopped: {e}. Continue with: {again} --resume --out {shlex.quote(cfg.out)}",
                  file=sys.stderr)
        return 130
    except (DataError, ValueError, FileNotFoundError) as e:
        return fail(str(e))
    finally:
        distributed.cleanup()
    if result is None:  # a rank other than 0: rank 0 writes and pushes
        return 0

    out = Path(cfg.out)
    print(f"wrote {out}/: config.json, model.safetensors, README.md, corpus.json, metrics.jsonl, loss.png")
    seeds = result.profile.seeds
    print(f"val loss {result.val_loss:.4f} nats/char; try: charrnn sample --weights "
          f"{shlex.quote(str(cfg.out))}"
          + (f" --seed-text {shlex.quote(seeds[0])}" if seeds else ""))
    if args.push_to_hub:
        try:
            url = push(out, args.push_to_hub, private=args.private)
        except Exception as e:  # the network went away since the check: the local files are safe
            return fail(f"could not push to {args.push_to_hub}: {first_line(e)}. Everything is saved in "
                        f"{out}/; push it later with: python -m charrnn.hub {shlex.quote(str(out))} "
                        f"{args.push_to_hub}")
        print(f"pushed to {url}")
    return 0


def reproduce_command(cfg: TrainConfig) -> str:
    """The train.py command for this config: --recipe where the budget would pick another one, then
    the settings that differ from that recipe's (also right for a resumed run, whose own command
    line was only --resume)."""
    args = [] if cfg.recipe == recipe_for_budget(cfg.max_minutes, "cpu") else ["--recipe", cfg.recipe]
    default = TrainConfig.from_recipe(cfg.recipe)
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in ("device", "recipe") or value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, shlex.quote(str(value))]
    return " ".join(["python train.py", *args])


def write_outputs(result, out: Path, command: str, load_from: str) -> None:
    """Weights, loss plot, corpus profile and model card (with samples from the corpus's own seeds)
    of a finished run (a TrainResult), into `out`; `load_from` is the folder or repo id as the user
    gave it."""
    model, cfg = result.model, result.config
    hub.save_weights(model, out)  # through the module: a test replaces each step of the end in turn
    write_best(out, result)  # snapshots/best: these weights' step and loss, for the Watch it learn tab
    title = f"{cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}: best val {result.val_loss:.4f} nats/char"
    hub.plot_losses(result.history, out / "loss.png", title, result.corpus, result.machine)
    result.profile.save(out)
    seeds = result.profile.seeds[:CARD_SAMPLES]
    outs = (complete(model, seed, Settings(length=300, temperature=0.8, sampling_seed=i))
            for i, seed in enumerate(seeds))
    samples = [(o.seed, o.sampled) for o in outs]
    # the card reads the result's fields by name
    card = hub.model_card(vars(result), samples, command, load_from)
    (out / "README.md").write_text(card, encoding="utf-8")


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
