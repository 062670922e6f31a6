"""The `charrnn` command: one entry point over the project's CLIs.

    charrnn train [flags]      # python train.py: train and write weights/
    charrnn sample [flags]     # python -m charrnn.sample
    charrnn evaluate [flags]   # python -m charrnn.evaluate
    charrnn push FOLDER OWNER/NAME [--private]    # python -m charrnn.hub
    charrnn space OWNER/NAME [--private] [--dry-run]   # python -m charrnn.space
    charrnn app [--model weights | OWNER/NAME] [flags]   # python app.py: the demo page (the [app] extra)

Each subcommand hands the rest of the command line to that module's main(argv), so flags,
help and errors are the module's own.
"""
import argparse
import importlib
import sys

# Imported only when chosen: `charrnn sample` should not wait for the training code, or --help for torch.
MODULES = {"train": "charrnn.train_cli", "sample": "charrnn.sample", "evaluate": "charrnn.evaluate",
           "push": "charrnn.hub", "space": "charrnn.space", "app": "charrnn.app.server"}
HELP = {"train": "train a model and write its weights folder (train.py)",
        "sample": "continue a text with a trained model",
        "evaluate": "score a model on a text, in nats and bits per char",
        "push": "upload a weights folder with its model card to a Hub model repo",
        "space": "deploy the demo app as a Hugging Face Space",
        "app": "serve the demo page (Gradio) for a weights folder or Hub repo"}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each flag's default in its help, except None or "" (its help says what happens without it) and
    switches that are off (unless given)."""

    def _get_help_string(self, action):
        if action.default in (None, "") or (action.nargs == 0 and action.default is False):
            return action.help
        return super()._get_help_string(action)


def prog(module: str) -> str:
    """The program name a subcommand's help shows: `charrnn sample` when run as that (main below
    sets argv[0]), else `python -m charrnn.sample`."""
    return sys.argv[0] if sys.argv[0].startswith("charrnn ") else f"python -m {module}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="charrnn", usage="charrnn COMMAND [ARGS...]",
                                description="A character-level language model of Don Quijote.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(f"  {k:<9} {v}" for k, v in HELP.items())
                                + "\n\n`charrnn COMMAND --help` shows a command's flags.")
    p.add_argument("command", choices=list(HELP), metavar="COMMAND", help=" | ".join(HELP))
    p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        p.error("give a COMMAND: " + " | ".join(HELP))
    args = p.parse_args(argv)
    try:
        run = importlib.import_module(MODULES[args.command]).main
    except ImportError as e:  # an optional dependency, e.g. tqdm for training: say which extra has it
        print(f"error: charrnn {args.command} cannot start: {e}", file=sys.stderr)
        return 2
    sys.argv[0] = f"charrnn {args.command}"  # the program name in the help of parsers that take it from argv
    return run(args.args) or 0


if __name__ == "__main__":
    sys.exit(main())
