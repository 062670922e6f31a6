"""Deploy the demo app as a Hugging Face Space (Gradio SDK), through HfApi.

    python -m charrnn.space OWNER/NAME [--private] [--model OWNER/NAME] [--dry-run]

Uploads exactly what the Space runs: app.py, the charrnn package (its app/ included), requirements.txt, LICENSE,
weights/ (with its snapshots) and README.md, whose front matter configures the Space. Never tests, bench, runs or
checkpoints. The Hub stores the weights and the loss plot in LFS by itself.
"""
import argparse
import sys
from pathlib import Path

from .hub import PushError, WeightsError, check_can_push, first_line, is_repo_id, load_model, upload_files

ROOT = Path(__file__).resolve().parent.parent  # the checkout holding app.py (an editable install's too)
TOP_FILES = ["app.py", "requirements.txt", "LICENSE", "README.md"]


def space_files(root: Path = ROOT) -> list[str]:
    """The paths the Space gets, relative to the repository root, sorted."""
    missing = [f for f in TOP_FILES + ["weights/config.json", "weights/model.safetensors"] if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} lacks {', '.join(missing)}: deploy from a checkout of the repository "
                                "with trained weights (python train.py writes weights/)")
    package = [p.relative_to(root).as_posix() for p in (root / "charrnn").rglob("*.py")]  # charrnn/app/ too
    weights = [f"weights/{f}" for f in upload_files(root / "weights")]  # its snapshots included
    return sorted(TOP_FILES + package + weights)


def space_readme(root: Path = ROOT, model: str | None = None) -> bytes:
    """README.md with its Space front matter; `models:` names the weights' Hub repo, or is absent."""
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(root / "README.md")
    card.data.models = [model] if model else None  # None: left out of the YAML
    return str(card).encode("utf-8")


def operations(root: Path = ROOT, model: str | None = None) -> list:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=f, path_or_fileobj=space_readme(root, model) if f == "README.md"
                               else str(root / f)) for f in space_files(root)]


def deploy(repo_id: str, root: Path = ROOT, private: bool = False, model: str | None = None,
           token: str | None = None) -> str:
    """Create the Space (or reuse it) and upload its files in one commit; returns its URL."""
    from huggingface_hub import HfApi

    check_can_push(repo_id, token)  # offline, unreachable or no token: one clear line, nothing sent
    api = HfApi(token=token)
    if model and not api.repo_exists(model, repo_type="model"):
        raise PushError(f"there is no model repo {model} on the Hub: push the weights first with "
                        f"`charrnn push weights {model}`")
    ops = operations(root, model)
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.create_commit(repo_id, repo_type="space", operations=ops, commit_message="Deploy the charrnn demo")
    return str(url)


def main(argv=None, root: Path = ROOT) -> int:
    p = argparse.ArgumentParser(prog="python -m charrnn.space", description=__doc__.split("\n")[0])
    p.add_argument("repo_id", metavar="OWNER/NAME", help="the Space to create or update")
    p.add_argument("--private", action="store_true", help="create a private Space")
    p.add_argument("--model", metavar="OWNER/NAME", help="the Hub model repo these weights were pushed to "
                   "(charrnn push weights OWNER/NAME); named in the front matter, so the Hub links the two")
    p.add_argument("--dry-run", action="store_true", help="list the files, one per line, and upload nothing")
    args = p.parse_args(argv)
    for name in filter(None, [args.repo_id, args.model]):
        if not is_repo_id(name):
            print(f"error: {name!r} is not a Hub repo id like OWNER/NAME", file=sys.stderr)
            return 2
    try:
        files = space_files(root)
        load_model(root / "weights")  # never deploy weights that do not load
        if args.dry_run:
            print("\n".join(files))
            return 0
        print(f"deployed to {deploy(args.repo_id, root, args.private, args.model)}")
    except (FileNotFoundError, WeightsError, PushError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the Hub client's own errors: no token, no permission, no network
        print(f"error: could not deploy to the Space {args.repo_id}: {first_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
