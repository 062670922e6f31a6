"""Deploy the demo app for a weights folder as a Hugging Face Space (Gradio SDK), through HfApi.

    charrnn space OWNER/NAME [--weights FOLDER] [--private] [--model OWNER/NAME] [--dry-run]

Works from a checkout or an installed package alike: the Space gets the charrnn package as it is
installed (its app/ included), a one-line app.py that starts it, requirements.txt pinning the
versions running here, LICENSE, the weights folder's files as weights/ (the model, its card, its
corpus.json, plot, metrics and snapshots; never the checkpoint) and a README.md whose front
matter, from the model's corpus.json, names and configures the Space. The Hub stores the weights
and the loss plot in LFS by itself.
"""
import argparse
import importlib.metadata
import sys
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, SpaceCardData

from . import corpus_profile
from .card import LICENSE, retarget
from .hub import PushError, check_can_push, upload_files
from .pretrained import load_model
from .weights import WeightsError, first_line, is_repo_id

PACKAGE = Path(__file__).resolve().parent  # the charrnn package as it is installed (or checked out)
APP = '"""The Space\'s entry: the demo page of the model in weights/ (charrnn/app)."""\n' \
      "from charrnn.app.server import main\n\nif __name__ == \"__main__\":\n    main()\n"
# What the app imports, pinned in the Space's requirements.txt to the versions running here.
REQUIREMENTS = ["torch", "gradio", "huggingface-hub", "safetensors", "numpy", "matplotlib"]
DISTRIBUTION = "charrnn-quijote"
SHORT_DESCRIPTION_CHARS = 60  # the Hub's limit for short_description


def package_files() -> dict[str, Path]:
    """The package's modules, as paths in the Space (charrnn/...), from wherever it is installed."""
    return {f"charrnn/{p.relative_to(PACKAGE).as_posix()}": p for p in sorted(PACKAGE.rglob("*.py"))}


def license_text() -> str | None:
    """The MIT license: the checkout's LICENSE beside the package, or the installed distribution's."""
    beside = PACKAGE.parent / "LICENSE"
    if beside.is_file():
        return beside.read_text(encoding="utf-8")
    try:
        return importlib.metadata.distribution(DISTRIBUTION).read_text("licenses/LICENSE")
    except importlib.metadata.PackageNotFoundError:
        return None


def requirements() -> str:
    """The app's dependencies, pinned to the versions running here (where they were tested)."""
    return "".join(f"{name}=={importlib.metadata.version(name)}\n" for name in REQUIREMENTS)


def front_matter(weights: Path, model: str | None = None):
    """The Space's configuration from the model's corpus.json: its title and a one-line description."""
    corpus = corpus_profile.load(weights) or corpus_profile.unrecorded()
    summary = f"A character-level model trained on {corpus.title}"
    if len(summary) > SHORT_DESCRIPTION_CHARS:
        summary = summary[: SHORT_DESCRIPTION_CHARS - 1].rstrip() + "…"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return SpaceCardData(title=f"charrnn {corpus.title}"[:100], emoji="✍️", colorFrom="yellow", colorTo="red",
                         sdk="gradio", sdk_version=importlib.metadata.version("gradio"),
                         python_version=python,
                         app_file="app.py", license=LICENSE, short_description=summary,
                         models=[model] if model else None, pinned=False)


def space_readme(weights: Path, model: str | None = None) -> str:
    """README.md: the front matter, then what the Space shows, then the model card (its code loading
    from the model repo when one is named, else from the Space's weights/)."""
    corpus = corpus_profile.load(weights) or corpus_profile.unrecorded()
    body = (f"# charrnn: {corpus.title}\n\nA character-level language model trained on "
            f"{corpus.description}: this Space is its demo page, made with the charrnn-quijote package "
            "(its code is in this Space).\n")
    card_path = weights / "README.md"
    if card_path.is_file():
        card = ModelCard.load(card_path)
        body += "\n" + retarget(card.text, model or "weights", corpus_profile.load(weights)).lstrip("\n")
    return f"---\n{front_matter(weights, model).to_yaml()}\n---\n\n{body}"


def space_contents(weights: Path, model: str | None = None) -> dict[str, bytes | Path]:
    """Every file of the Space, by its path there: bytes written here, or a file to upload as is."""
    missing = [f for f in ("config.json", "model.safetensors") if not (weights / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{weights} lacks {', '.join(missing)}: pass --weights FOLDER, a folder that "
                                "`charrnn train --out FOLDER` wrote")
    files: dict[str, bytes | Path] = {"app.py": APP.encode(), "requirements.txt": requirements().encode(),
                                      "README.md": space_readme(weights, model).encode("utf-8")}
    if (text := license_text()) is not None:
        files["LICENSE"] = text.encode("utf-8")
    files.update(package_files())
    files.update({f"weights/{f}": weights / f for f in upload_files(weights)})  # its snapshots included
    return dict(sorted(files.items()))


def size(content: bytes | Path) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


def operations(contents: dict[str, bytes | Path]) -> list:
    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content if isinstance(content, bytes)
                               else str(content)) for name, content in contents.items()]


def deploy(repo_id: str, contents: dict[str, bytes | Path], private: bool = False, model: str | None = None,
           token: str | None = None) -> str:
    """Create the Space (or reuse it) and upload its files in one commit; returns its URL."""
    check_can_push(repo_id, token)  # offline, unreachable or no token: one clear line, nothing sent
    api = HfApi(token=token)
    if model and not api.repo_exists(model, repo_type="model"):
        raise PushError(f"there is no model repo {model} on the Hub: push the weights first with "
                        f"`charrnn push WEIGHTS {model}`")
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    api.create_commit(repo_id, repo_type="space", operations=operations(contents),
                      commit_message="Deploy the charrnn demo")
    return str(url)


def dry_run_report(repo_id: str, contents: dict[str, bytes | Path], model_line: str) -> str:
    """What a deploy would send: the address, the front matter, each file with its size, the total."""
    readme = contents["README.md"].decode("utf-8")
    front = readme.split("\n---\n", 1)[0] + "\n---"
    sizes = {name: size(content) for name, content in contents.items()}
    width = len(f"{sum(sizes.values()):,}")
    rows = [f"{n:>{width},}  {name}" for name, n in sizes.items()]
    total = sum(sizes.values())
    return "\n".join([f"Space: https://huggingface.co/spaces/{repo_id} (dry run: nothing is sent)",
                      f"weights: {model_line}", "README.md front matter:", front,
                      f"{len(sizes)} files:", *rows, f"{total:>{width},}  total ({total / 2**20:.1f} MiB)"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="charrnn space", description=__doc__.split("\n")[0])
    p.add_argument("repo_id", metavar="OWNER/NAME", help="the Space to create or update")
    p.add_argument("--weights", default="weights", help="the weights folder the Space serves, as "
                   "`charrnn train --out` wrote it (default: %(default)s)")
    p.add_argument("--private", action="store_true", help="create a private Space")
    p.add_argument("--model", metavar="OWNER/NAME", help="the Hub model repo these weights were pushed to "
                   "(charrnn push FOLDER OWNER/NAME); named in the front matter, so the Hub links the two")
    p.add_argument("--dry-run", action="store_true", help="load the weights, print the front matter and "
                   "every file with its size, and upload nothing")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in filter(None, [args.repo_id, args.model]):
        if not is_repo_id(name):
            print(f"error: {name!r} is not a Hub repo id like OWNER/NAME", file=sys.stderr)
            return 2
    weights = Path(args.weights)
    try:
        if not weights.is_dir():
            raise FileNotFoundError(f"no weights folder at {args.weights}: pass --weights FOLDER, a folder "
                                    "that `charrnn train --out FOLDER` wrote")
        model = load_model(weights)  # never deploy weights that do not load
        contents = space_contents(weights, args.model)
        if args.dry_run:
            rnn = model.rnn
            loads = (f"{args.weights} loads: {model.cell.upper()} {rnn.num_layers}x{rnn.hidden_size}, "
                     f"{len(model.vocab)}-character vocabulary")
            print(dry_run_report(args.repo_id, contents, loads))
            return 0
        print(f"deployed to {deploy(args.repo_id, contents, args.private, args.model)}")
    except (FileNotFoundError, WeightsError, PushError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the Hub client's own errors: no token, no permission, no network
        print(f"error: could not deploy to the Space {args.repo_id}: {first_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
