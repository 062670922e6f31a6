"""Publishing weights: save them atomically, the loss plot, the model card of a run, the card's
metrics and corpus read back, and the push to the Hub (with its CLI). Loading is
CharRNN.from_pretrained (charrnn/model.py, over charrnn/weights.py's checks)."""
import argparse
import os
import sys
import tempfile
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token, try_to_load_from_cache

from . import corpus_profile
from .card import Metrics, load_metrics, render, retarget
from .corpus_profile import PROFILE_FILE, CorpusProfile
from .model import CharRNN
from .pretrained import load_model
from .weights import PROBE_TIMEOUT_S, WEIGHT_FILES, first_line, hub_offline, hub_reachable, is_repo_id

UPLOAD_FILES = ["config.json", "model.safetensors", "README.md", PROFILE_FILE, "loss.png", "metrics.jsonl"]
SNAPSHOTS = "snapshots"  # training's snapshots of the weights (charrnn/snapshots.py), a subfolder each
SNAPSHOT_FILES = ("config.json", "model.safetensors", "snapshot.json")


def save_weights(model: CharRNN, out: Path) -> None:
    """save_pretrained into a temp folder, then move each file into place: a half-written
    model.safetensors never replaces a good one."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        model.save_pretrained(tmp)
        # safetensors writes through a private (0600) temp file; give the weights the mode
        # config.json got from the umask, so an app running as another user can read them.
        mode = (Path(tmp) / "config.json").stat().st_mode & 0o777
        for name in WEIGHT_FILES:
            os.chmod(Path(tmp) / name, mode)
            os.replace(Path(tmp) / name, out / name)


def training_curve(history: list[dict]) -> tuple[list[float], list[float]]:
    """(minutes, train loss) of the metrics rows' training-loss points (rows written before those
    points existed give one point each: the mean since the evaluation before)."""
    points = [p for r in history for p in r.get("train_points") or [[r.get("step"), r["elapsed_s"],
                                                                     r["train_loss"]]]]
    return [p[1] / 60 for p in points], [p[2] for p in points]


def plot_losses(history: list[dict], path: Path, title: str, corpus=None, machine: str = "") -> None:
    """The loss curves; `corpus` (a data.CorpusInfo) decides whether the tutorial's line belongs:
    only the default corpus is compared with it. `machine` names the processor on the time axis."""
    import matplotlib  # noqa: PLC0415 (the [train] and [app] extra: the library loads without it)

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(*training_curve(history), label="train", lw=1)
    bounded = corpus is not None and not corpus.exact
    val_label = "validation (last 20%)" + (f", its first {corpus.eval_chars:,} chars" if bounded else "")
    ax.plot([r["elapsed_s"] / 60 for r in history], [r["val_loss"] for r in history],
            label=val_label, marker="o", ms=3)
    if corpus is None or corpus.default:
        ax.axhline(1.2446, color="gray", ls="--", lw=1, label="PyTorch tutorial best val (1.2446)")
    ax.set(xlabel="minutes of the run" + (f" ({machine})" if machine else ""),
           ylabel="cross-entropy (nats/char)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(summary: dict, samples: list[tuple[str, str]], command: str, load_from: str = "weights",
               corpus: CorpusProfile | None = None) -> str:
    """README.md for a finished run's weights folder, from the one template (charrnn/card.py).
    `samples` are (seed as the model read it, continuation); `load_from` is a folder or repo id, as
    the user gave it; `corpus` the text and its validation score (default: the run's profile)."""
    cfg, model = summary["config"], summary["model"]
    facts = [("training", f"{summary['steps']:,} steps, {summary['minutes']:.1f} min, best at step "
                          f"{summary['best_step']:,}")]
    recipe = [f"- Recipe `{cfg.recipe}` (`python train.py --help` lists its settings), with the settings "
              "below.",
              f"- Every position is a target; {cfg.batch_size} contiguous rows read in {cfg.seq_len}-char "
              f"chunks with the recurrent state carried between chunks (stateful truncated BPTT).",
              f"- AdamW (lr {cfg.lr}, weight decay {cfg.weight_decay}), {cfg.warmup_frac:.0%} warmup then "
              f"cosine to {cfg.min_lr_frac:.0%}, gradient clipping {cfg.grad_clip}, dropout {cfg.dropout}; "
              f"the checkpoint with the best validation loss kept."]
    card = render(model, repo_id=load_from, corpus=corpus or summary["profile"], facts=facts, recipe=recipe,
                  samples=samples, command=command, plot=True)
    return str(card)


def _weights_file(source: str | os.PathLike, name: str) -> Path | None:
    """A file of a weights folder or (from the local cache only, no network) of a Hub repo id."""
    path = Path(source) / name
    if not Path(source).exists() and is_repo_id(str(source)):
        cached = try_to_load_from_cache(str(source), name)
        path = Path(cached) if isinstance(cached, str) else path
    return path if path.is_file() else None


def card_metrics(source: str | os.PathLike) -> Metrics | None:
    """The validation metrics in the model card of a weights folder or (from the local cache
    only, no network) a Hub repo id; None without a card or without a model-index."""
    card = _weights_file(source, "README.md")
    return load_metrics(card) if card else None


def corpus_of(source: str | os.PathLike) -> CorpusProfile:
    """What the model at `source` (a folder or a cached Hub repo id) was trained on, as its
    corpus.json tells it; for weights without one, a profile that claims nothing."""
    found = _weights_file(source, PROFILE_FILE)
    return (found and corpus_profile.load(found.parent)) or corpus_profile.unrecorded()


class PushError(Exception):
    """The Hub cannot take an upload now (offline, unreachable, no token); the message says why."""


def check_can_push(repo_id: str | None = None, token: str | None = None) -> None:
    """Raise PushError unless an upload to `repo_id` can work: online, a token, the Hub answering
    and accepting it, and (for a repo id) its user allowed to write under OWNER. Cheap, so it runs
    before a long training run rather than after it."""
    if repo_id is not None and not is_repo_id(repo_id):
        raise PushError(f"a Hub repo id is OWNER/NAME, not {repo_id!r}")
    if hub_offline():  # huggingface_hub's upload calls do not honour it themselves
        raise PushError("HF_HUB_OFFLINE is set: unset it to upload to the Hub")
    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token: log in with `hf auth login` or set HF_TOKEN")
    if not hub_reachable():  # the client's own requests retry for long: a quick look first
        raise PushError(f"the Hub cannot be reached (no answer within {PROBE_TIMEOUT_S:g} s)")
    try:
        me = HfApi(token=token).whoami()
    except Exception as e:
        raise PushError(f"the Hub does not accept the token ({first_line(e)}): run `hf auth login` "
                        "or set HF_TOKEN") from None
    owner = (repo_id or "").partition("/")[0]
    if owner and owner not in {me.get("name")} | {org.get("name") for org in me.get("orgs", [])}:
        raise PushError(f"the token belongs to {me.get('name')}, who cannot write under {owner!r}")
    if me.get("auth", {}).get("accessToken", {}).get("role") == "read":
        raise PushError("the Hugging Face token is read-only: create one with write access")


def push(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload the weights folder's files to a model repo; returns the repo URL.
    The token comes from `token`, $HF_TOKEN or `hf auth login`, as huggingface_hub decides."""
    check_can_push(repo_id, token)  # offline, unreachable or no token: one clear line, nothing sent
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.create_commit(repo_id, repo_type="model", operations=upload_operations(Path(folder), repo_id),
                      commit_message="Upload charrnn weights, model card and metrics")
    return str(url)


def upload_operations(folder: Path, repo_id: str) -> list:
    """One CommitOperationAdd per file the repo gets; the card's code is retargeted to `repo_id`."""
    ops, corpus = [], corpus_profile.load(folder)
    for name in upload_files(folder):
        content = folder / name
        if name == "README.md":
            content = retarget(content.read_text(encoding="utf-8"), repo_id, corpus).encode("utf-8")
        ops.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=content))
    return ops


def upload_files(folder: Path) -> list[str]:
    """The files of a weights folder that are pushed and deployed, as paths relative to it: the
    weights, card, plot and metrics, then every snapshot's files (never the checkpoint)."""
    top = [f for f in UPLOAD_FILES if (folder / f).is_file()]
    snapshots = [p.relative_to(folder).as_posix() for p in sorted(folder.glob(f"{SNAPSHOTS}/*/*"))
                 if p.name in SNAPSHOT_FILES and p.is_file()]
    return top + snapshots


def main(argv=None) -> int:
    """python -m charrnn.hub FOLDER OWNER/NAME [--private]: push a trained weights folder."""
    p = argparse.ArgumentParser(prog="python -m charrnn.hub", description="Push a weights folder to the Hub.")
    p.add_argument("folder")
    p.add_argument("repo_id", metavar="OWNER/NAME")
    p.add_argument("--private", action="store_true")
    args = p.parse_args(argv)
    try:
        load_model(args.folder)  # never upload something that does not load
        print(f"pushed to {push(Path(args.folder), args.repo_id, private=args.private)}")
    except Exception as e:
        print(f"error: could not push {args.folder} to {args.repo_id}: {first_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
