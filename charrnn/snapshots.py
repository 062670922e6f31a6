"""Snapshots of the weights as a run learns, for the app's "Watch it learn" tab: what the model
writes after 100 steps, 500, an epoch, half the run, and at its best.

Training keeps one at each moment of `--snapshots` (config.snapshot_moments), in a subfolder of
the weights folder, which is pushed and deployed with it:

    weights/snapshots/step-000100/  config.json, model.safetensors (half precision), snapshot.json
    weights/snapshots/best/         snapshot.json only: its weights are the folder's own

snapshot.json holds the moments it was taken for, the step, epoch, training minutes and the
validation loss then (nats/char, as the run's evaluations read it). A snapshot loads through the
one loading path (load_model), in fp32 like any weights.
"""
import copy
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import snapshot_download

from .config import TrainConfig, snapshot_moments
from .hub import SNAPSHOTS, save_weights
from .model import CharRNN
from .pretrained import load_model
from .validation import nats_per_char
from .weights import hub_offline, is_repo_id

INFO = "snapshot.json"
OWN, PARENT = ".", "../.."  # where a snapshot's weights are: its own folder, or the weights folder's (best)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as snapshot.json describes it, and the folder its weights load from."""
    name: str  # its folder: step-000100, or best
    moments: tuple[str, ...]  # the --snapshots moments it was taken for ("100", "epoch1", "half", "best")
    step: int
    epoch: float
    minutes: float  # training time, evaluations excluded
    val_loss: float | None  # nats/char on the run's validation text
    weights: Path  # a folder with config.json + model.safetensors

    def label(self) -> str:
        """'step 100 (0.4 min) · val 2.013 nats/char', for a page or a log."""
        loss = "" if self.val_loss is None else f" · val {self.val_loss:.3f} nats/char"
        best = " · best" if "best" in self.moments else ""
        return f"step {self.step:,} ({self.minutes:.1f} min, epoch {self.epoch:.2f}){loss}{best}"

    def load(self, device: torch.device | str = "cpu") -> CharRNN:
        return load_model(self.weights, device)


# ---- taking them while training ------------------------------------------------------------------

class Keeper:
    """Takes the snapshots `cfg.snapshots` asks for as a run crosses each moment (best excepted:
    write_best, once the run has chosen its weights). A fresh run first removes the snapshots of
    an earlier run in the same folder; a resumed one keeps them."""

    def __init__(self, cfg: TrainConfig, out: Path, steps_per_epoch: int, step: int, epoch: int,
                 progress: float):
        self.moments = [m for m in snapshot_moments(cfg.snapshots) if m != "best"]
        self.folder, self.cfg, self.steps_per_epoch = out / SNAPSHOTS, cfg, steps_per_epoch
        self.last = (step, epoch, progress)
        if step == 0 and self.folder.is_dir():
            shutil.rmtree(self.folder)

    def due(self, step: int, epoch: int, progress: float) -> list[str]:
        """The moments crossed since the last call (the run is at this step, epoch and progress)."""
        now = (step, epoch, progress)
        crossed = [m for m in self.moments if _value(m, self.last) < _mark(m) <= _value(m, now)]
        self.last = now
        return crossed

    def take_due(self, model: CharRNN, run, progress: float, val_ids: torch.Tensor) -> float:
        """Keep a snapshot now if a moment was crossed; returns the seconds it took (not training time)."""
        moments = self.due(run.step, run.epoch, progress)
        if not moments:
            return 0.0
        start = time.perf_counter()
        val = nats_per_char(model, val_ids, rows=self.cfg.eval_rows)
        info = dict(moments=moments, step=run.step, epoch=round(run.step / self.steps_per_epoch, 3),
                    minutes=round(run.elapsed_s / 60, 4), val_loss=round(val, 4), weights=OWN)
        save_snapshot(model, self.folder / f"step-{run.step:06d}", info)
        return time.perf_counter() - start


def _mark(moment: str) -> float:
    """Where a moment lies on its own scale: steps, epochs or the share of the run."""
    if moment == "half":
        return 0.5
    return float(moment.removeprefix("epoch").removesuffix("%")) / (100 if moment.endswith("%") else 1)


def _value(moment: str, position: tuple[int, int, float]) -> float:
    """The run's position (step, epoch, progress) on that moment's scale."""
    step, epoch, progress = position
    if moment.startswith("epoch"):
        return epoch
    return progress if moment == "half" or moment.endswith("%") else step


def save_snapshot(model: CharRNN, folder: Path, info: dict) -> None:
    """The weights in half precision (a CPU copy: training's model is untouched) and snapshot.json.
    Several moments on one step share a folder: their names are merged."""
    if (folder / INFO).is_file():
        old = json.loads((folder / INFO).read_text(encoding="utf-8"))
        info = {**info, "moments": list(dict.fromkeys(old.get("moments", []) + info["moments"]))}
    save_weights(copy.deepcopy(model).to("cpu", torch.float16), folder)
    _write_info(folder, info)


def write_best(out: Path, result) -> None:
    """snapshots/best/snapshot.json for a finished run (a training.TrainResult) whose --snapshots
    names best: the step, minutes and exact validation loss of the weights the run kept, which
    are the folder's own (not stored twice)."""
    if "best" not in snapshot_moments(result.config.snapshots):
        return
    row = next((r for r in result.history if r["step"] == result.best_step), {})
    info = dict(moments=["best"], step=result.best_step, epoch=row.get("epoch", 0.0),
                minutes=round(row.get("elapsed_s", result.minutes * 60) / 60, 4),
                val_loss=round(result.val_loss, 4), weights=PARENT)
    _write_info(out / SNAPSHOTS / "best", info)


def _write_info(folder: Path, info: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (INFO + ".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    tmp.replace(folder / INFO)


# ---- finding them --------------------------------------------------------------------------------

def find_snapshots(source: str | Path, log=None) -> list[Snapshot]:
    """The snapshots of a weights folder or Hub repo id (from the cache when offline), by step,
    best last; [] when it has none. A damaged snapshot.json is skipped (and logged)."""
    folder = _snapshots_folder(source, log)
    found = []
    for info in sorted(folder.glob(f"*/{INFO}")) if folder is not None else []:
        try:
            found.append(_load_info(info))
        except (ValueError, KeyError, TypeError) as e:
            if log:
                log(f"skipped the snapshot in {info.parent}: {e}")
    return sorted(found, key=lambda s: (s.step, "best" in s.moments))


def _load_info(info: Path) -> Snapshot:
    data = json.loads(info.read_text(encoding="utf-8"))
    if data.get("weights", OWN) not in (OWN, PARENT):  # a downloaded file names no other path
        raise ValueError(f"its weights are {data['weights']!r}, not {OWN!r} or {PARENT!r}")
    weights = info.parent if data.get("weights", OWN) == OWN else info.parent.parent.parent
    val = data.get("val_loss")
    return Snapshot(info.parent.name, tuple(str(m) for m in data["moments"]), int(data["step"]),
                    float(data.get("epoch", 0.0)), float(data.get("minutes", 0.0)),
                    None if val is None else float(val), weights)


def _snapshots_folder(source: str | Path, log) -> Path | None:
    """`source`/snapshots for a folder; for a Hub repo id, its snapshots downloaded (or cached)."""
    path = Path(source)
    if path.is_dir():
        return path / SNAPSHOTS
    if not is_repo_id(str(source)):
        return None
    try:
        root = snapshot_download(str(source), allow_patterns=[f"{SNAPSHOTS}/*/*"],
                                 local_files_only=hub_offline())
    except Exception as e:  # offline and not cached, or no such repo: a page without snapshots, said once
        if log:
            log(f"no snapshots of {source}: {e}")
        return None
    return Path(root) / SNAPSHOTS
