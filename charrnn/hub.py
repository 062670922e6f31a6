"""Weights on disk and on the Hub: load with clear errors, save atomically, the loss plot,
the model card, and the push."""
import contextlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .model import CharRNN

WEIGHT_FILES = ("config.json", "model.safetensors")
UPLOAD_FILES = ["config.json", "model.safetensors", "README.md", "loss.png", "metrics.jsonl"]


def first_line(e: Exception) -> str:
    """An exception as one line for the user: libraries' messages can run to many."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class WeightsError(Exception):
    """Weights that cannot be loaded; the message says which and why."""


def load_model(weights: str | os.PathLike, device: torch.device | str = "cpu") -> CharRNN:
    """Load from a folder (config.json + model.safetensors) or a Hub repo id, strictly:
    a missing or extra tensor is an error, not a silently half-initialized model."""
    path = Path(weights)
    if path.is_dir():
        missing = [f for f in WEIGHT_FILES if not (path / f).is_file()]
        if missing:
            raise WeightsError(f"{path} is missing {', '.join(missing)}: train with `python train.py --out {path}`")
        try:
            json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise WeightsError(f"{path / 'config.json'} is not valid JSON ({e})") from None
    elif path.exists() or str(weights).count("/") != 1 or str(weights).startswith((".", "/")):
        raise WeightsError(f"no weights folder at {weights} (and it is not a Hub repo id like OWNER/NAME)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints "Loading weights..."
            model = CharRNN.from_pretrained(str(weights), strict=True, map_location="cpu")
    except Exception as e:  # the Hub client, safetensors and torch each raise their own kinds
        raise WeightsError(f"could not load weights from {weights}: {first_line(e)}") from None
    return model.to(device).eval()


def save_weights(model: CharRNN, out: Path) -> None:
    """save_pretrained into a temp folder, then move each file into place: a half-written
    model.safetensors never replaces a good one."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        model.save_pretrained(tmp)
        for name in WEIGHT_FILES:
            os.replace(Path(tmp) / name, out / name)


def plot_losses(history: list[dict], path: Path, title: str, corpus=None) -> None:
    """The loss curves; `corpus` (a data.CorpusInfo) decides whether the tutorial's line belongs:
    only the default corpus is compared with it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["elapsed_s"] / 60 for r in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(minutes, [r["train_loss"] for r in history], label="train (mean since last eval)")
    bounded = corpus is not None and not corpus.exact
    val_label = "validation (last 20%)" + (f", its first {corpus.eval_chars:,} chars" if bounded else "")
    ax.plot(minutes, [r["val_loss"] for r in history], label=val_label, marker="o", ms=3)
    if corpus is None or corpus.default:
        ax.axhline(1.2446, color="gray", ls="--", lw=1, label="PyTorch tutorial best val (1.2446)")
    ax.set(xlabel="training minutes (2-core CPU)", ylabel="cross-entropy (nats/char)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(summary: dict, samples: list[tuple[str, str]], command: str, load_from: str = "weights") -> str:
    """README.md for the weights folder: what it is, how good, how made, how to load.
    `samples` are (seed as the model read it, continuation); `load_from` is a folder or repo id."""
    from huggingface_hub import ModelCard, ModelCardData

    cfg, model = summary["config"], summary["model"]
    nats = summary["val_loss"]
    text_kind = "accent-stripped (the tutorials' setting)" if cfg.strip_accents else "NFC, accents, ñ, ¿ and ¡ kept"
    data = ModelCardData(language="es", license="mit", library_name="charrnn",
                         tags=["char-rnn", "text-generation", "spanish", "don-quijote", cfg.cell],
                         pipeline_tag="text-generation",
                         model_name=f"charrnn {cfg.cell.upper()} {cfg.num_layers}x{cfg.hidden_size}")
    vocab_shown = json.dumps(model.vocab.chars, ensure_ascii=False)
    sample_md = "\n\n".join(f"**Seed:** `{seed!r}`\n\n```text\n{seed}{cont}\n```" for seed, cont in samples)
    body = f"""
# charrnn: a character-level {cfg.cell.upper()} of *Don Quijote*

A {cfg.num_layers}-layer {cfg.cell.upper()} ({cfg.hidden_size} units, embedding {cfg.embed_dim},
{model.num_params():,} parameters) that writes Spanish one character at a time, trained from scratch
on Cervantes' *El ingenioso hidalgo don Quijote de la Mancha* (Part I, the PyTorch char-RNN
tutorial's `el_quijote.txt`).

## Metrics
| | value |
|---|---|
| validation loss (last 20% of the text, state carried from its first char) | **{nats:.4f} nats/char** ({nats / math.log(2):.4f} bits/char) |
| text | {text_kind} |
| training | {summary['steps']:,} steps, {summary['minutes']:.1f} min on a 2-core CPU, best at step {summary['best_step']:,} |
| PyTorch tutorial's best (accent-stripped, 20 GPU epochs) | 1.2446 nats/char |

![loss curve](loss.png)

Reproduce: `{command}`; score: `python -m charrnn.evaluate --weights {load_from} --data el_quijote.txt --split val`.

## Training
- Corpus: `el_quijote.txt` ({summary['train_chars'] + summary['val_chars']:,} chars after normalization),
  first 80% for training, last 20% for validation, split by position.
- Vocabulary ({len(model.vocab)} chars): {vocab_shown}
- Every position is a target; {cfg.batch_size} contiguous streams read in {cfg.seq_len}-char chunks with
  the recurrent state carried between chunks (stateful truncated BPTT).
- AdamW (lr {cfg.lr}, weight decay {cfg.weight_decay}), {cfg.warmup:.0%} warmup then cosine to
  {cfg.min_lr:.0%}, gradient clipping {cfg.grad_clip}, dropout {cfg.dropout}, the checkpoint with the best
  validation loss kept.

## Samples (temperature 0.8)
{sample_md}

## Use
```python
from charrnn import CharRNN, Settings, complete
model = CharRNN.from_pretrained("{load_from}")
print(complete(model, "En un lugar de la Mancha", Settings(length=300, temperature=0.8)).sampled)
```
or `python -m charrnn.sample --weights {load_from} --seed-text "En un lugar de la Mancha"`,
or the Gradio app: `python app.py`.

## Limits
It learns spelling, punctuation and the rhythm of 17th-century prose from one million characters;
it does not know facts or keep a plot. Text is Spanish of Cervantes' time.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def push(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload the weights folder's files to a model repo; returns the repo URL.
    The token comes from `token`, $HF_TOKEN or `hf auth login`, as huggingface_hub decides."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    present = [f for f in UPLOAD_FILES if (Path(folder) / f).is_file()]
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", allow_patterns=present,
                      commit_message="Upload charrnn weights, model card and metrics")
    return str(url)


def main(argv=None) -> int:
    """python -m charrnn.hub FOLDER OWNER/NAME [--private]: push a trained weights folder."""
    import argparse
    import sys

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
