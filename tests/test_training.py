import dataclasses
import json
import math
import signal

import pytest
import torch

from charrnn import checkpoint, config, training
from charrnn.training import Interrupted, TrainConfig, lr_at, train
from charrnn.validation import nats_per_char
from conftest import make_text, tiny_config


def test_tiny_model_lowers_its_loss(tmp_path):
    result = train(tiny_config(tmp_path, epochs=3.0), log=lambda *_: None)
    history = result.history
    vocab_size = len(result.model.vocab)
    assert history[0]["val_loss"] < math.log(vocab_size)  # better than uniform after 10 steps
    assert result.val_loss < history[0]["val_loss"] - 0.3  # and clearly better by the end
    assert result.val_loss == pytest.approx(min(r["val_loss"] for r in history), abs=0.05)
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == len(history)


def test_lr_schedule_warms_up_then_decays_to_floor():
    cfg = TrainConfig(lr=1e-3, warmup_frac=0.1, min_lr_frac=0.05)
    assert lr_at(cfg, 0.0) == 0.0
    assert lr_at(cfg, 0.05) == pytest.approx(0.5e-3)
    assert lr_at(cfg, 0.1) == pytest.approx(1e-3)
    assert lr_at(cfg, 1.0) == pytest.approx(0.05e-3)
    assert lr_at(cfg, 0.5) > lr_at(cfg, 0.8)


def test_the_budget_picks_the_recipe_and_explicit_settings_win():
    short = TrainConfig.from_recipe(max_minutes=10).validate()
    long = TrainConfig.from_recipe().validate()  # default: 27 minutes
    assert (short.cell, short.num_layers, short.batch_size, short.seq_len,
            short.dropout) == ("gru", 1, 64, 64, 0.2)
    assert (long.cell, long.num_layers, long.batch_size, long.seq_len,
            long.dropout) == ("lstm", 2, 16, 128, 0.25)
    assert short.recipe == "short" and long.recipe == "long"
    assert TrainConfig() == long  # the plain defaults are the long recipe: what `python train.py` runs
    assert TrainConfig.from_recipe(max_minutes=config.SHORT_MAX_MINUTES).cell == "gru"  # the edge is short
    assert TrainConfig.from_recipe("short", max_minutes=60).cell == "gru"  # a named recipe beats the rule
    mixed = TrainConfig.from_recipe(max_minutes=10, cell="lstm", lr=1e-3)
    assert (mixed.cell, mixed.lr, mixed.num_layers) == ("lstm", 1e-3, 1)  # the rest still from the recipe
    with pytest.raises(ValueError, match="recipe must be one of short, long, gpu"):
        TrainConfig.from_recipe("medium")


def test_cuda_picks_the_gpu_recipe_whatever_the_budget():
    for minutes in (5, 27):
        cfg = TrainConfig.from_recipe(max_minutes=minutes, device="cuda").validate()
        assert cfg.recipe == "gpu" and cfg.hidden_size == config.RECIPES["gpu"]["hidden_size"]
        assert cfg.max_minutes == minutes  # the budget given still wins
    assert TrainConfig.from_recipe(device="cuda").max_minutes == config.RECIPES["gpu"]["max_minutes"]
    assert TrainConfig.from_recipe(device="cpu").recipe == "long"


def test_the_gpu_recipe_trains_on_the_cpu_at_a_small_size(tmp_path):
    small = dict(hidden_size=48, embed_dim=16, batch_size=8, seq_len=32, epochs=2.0, eval_every=20,
                 eval_rows=4)
    cfg = TrainConfig.from_recipe("gpu", data=str(make_text(tmp_path / "text.txt")),
                                  out=str(tmp_path / "out"), **small)
    assert (cfg.num_layers, cfg.locked_dropout) == (3, True) and min(cfg.weight_drop, cfg.ema_decay) > 0
    result = train(cfg, log=lambda *_: None)  # its regularizers and the average, on the CPU
    assert result.val_loss < math.log(len(result.model.vocab)) - 0.5
    assert all({"val_loss_latest", "val_loss_ema"} <= set(r) for r in result.history)


def test_with_a_weight_average_the_run_keeps_whichever_weights_read_better(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2.0, lr=5e-2, ema_decay=0.9)  # a noisy run: the average wins late
    result = train(cfg, log=lambda *_: None)
    rows = result.history
    assert all(r["val_loss"] == min(r["val_loss_latest"], r["val_loss_ema"]) for r in rows)
    assert {r["val_loss_ema"] < r["val_loss_latest"] for r in rows} == {True, False}  # each wins somewhere
    best = min(rows, key=lambda r: r["val_loss"])
    assert result.best_step == best["step"] and best["val_loss_ema"] < best["val_loss_latest"]
    val_ids = training.open_corpus(cfg, log=lambda *_: None).eval_ids()
    kept = nats_per_char(result.model, val_ids, rows=cfg.eval_rows)
    # the weights kept are the average that scored it
    assert kept == pytest.approx(best["val_loss"], abs=1e-4)


REGULARIZED = dict(cell="lstm", num_layers=2, dropout=0.2, locked_dropout=True, embed_dropout=0.1,
                   weight_drop=0.2,
                   ema_decay=0.9)  # every regularizer, and the weight average that the checkpoint must carry


@pytest.mark.parametrize("kwargs", [dict(epochs=2.0), dict(epochs=2.0, **REGULARIZED)],
                         ids=["plain", "regularized"])
def test_ctrl_c_saves_checkpoint_and_resume_matches_uninterrupted_run(tmp_path, monkeypatch, kwargs):
    full = train(tiny_config(tmp_path / "a", **kwargs), log=lambda *_: None)

    # Press Ctrl-C (a real SIGINT to this process) during step 23 of an identical run.
    calls = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def clip_and_interrupt(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 23:
            signal.raise_signal(signal.SIGINT)
        return clip(*a, **kw)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_interrupt)
    cfg = tiny_config(tmp_path / "b", **kwargs)
    before = signal.getsignal(signal.SIGINT)  # not always the default: `cmd &` starts with SIGINT ignored
    with pytest.raises(Interrupted) as err:
        train(cfg, log=lambda *_: None)
    assert err.value.step == 23  # the step in flight was finished, then it stopped
    ckpt = torch.load(tmp_path / "b" / "out" / "checkpoint.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 23 and not ckpt["finished"]
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    monkeypatch.undo()

    logs = []
    resumed = train(TrainConfig(out=cfg.out), resume=True, log=logs.append)
    assert "resuming from step 23" in logs[0]
    assert resumed.steps == full.steps
    assert [r["step"] for r in resumed.history] == [r["step"] for r in full.history]
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v)
    assert resumed.val_loss == pytest.approx(full.val_loss, abs=1e-6)

    with pytest.raises(FileNotFoundError, match="already finished"):
        train(TrainConfig(out=cfg.out), resume=True)


def test_a_checkpoint_from_before_the_regularizers_resumes_without_them(tmp_path):
    saved = dataclasses.asdict(tiny_config(tmp_path))
    for name in config.REGULARIZERS_OFF:
        del saved[name]  # as a checkpoint of the version before them holds its settings
    cfg = checkpoint.resumed_config({"config": saved}, TrainConfig(out=str(tmp_path / "out")), set(),
                                    tmp_path / "out" / "checkpoint.pt", log=lambda *_: None)
    assert {name: getattr(cfg, name) for name in config.REGULARIZERS_OFF} == config.REGULARIZERS_OFF
    assert TrainConfig().locked_dropout  # which is not today's default


def test_a_checkpoint_from_before_the_renames_resumes_with_its_settings(tmp_path):
    """Checkpoints written before issue 25 name the training seed "seed" and the evaluation's rows
    "eval_streams"."""
    saved = dataclasses.asdict(tiny_config(tmp_path, training_seed=7, eval_rows=3))
    saved["seed"], saved["eval_streams"] = saved.pop("training_seed"), saved.pop("eval_rows")
    cfg = checkpoint.resumed_config({"config": saved}, TrainConfig(out=str(tmp_path / "out")), set(),
                                    tmp_path / "out" / "checkpoint.pt", log=lambda *_: None)
    assert (cfg.training_seed, cfg.eval_rows) == (7, 3) != (TrainConfig.training_seed, TrainConfig.eval_rows)


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(TrainConfig(out=str(tmp_path)), resume=True)


def test_early_stop_when_validation_stops_improving(tmp_path, monkeypatch):
    scores = iter([2.0, 1.5, 1.6, 1.7, 1.8] + [9.0] * 100)
    monkeypatch.setattr(training, "nats_per_char", lambda *a, **kw: next(scores))
    result = train(tiny_config(tmp_path, epochs=5.0, eval_every=5, patience=3), log=lambda *_: None)
    assert result.stop_reason == "early stop"
    assert result.steps == 25 and result.best_step == 10


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=0), "hidden-size must be a positive"),
    (dict(batch_size=-3), "batch-size must be a positive"),
    (dict(dropout=1.5), "dropout"),
    (dict(lr=0), "must be positive"),
    (dict(max_minutes=-1), "max-minutes must be positive"),
    (dict(cell="transformer"), "cell must be"),
    (dict(hidden_size=100_000), "too large|this large"),
])
def test_nonsense_sizes_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad).validate()


def test_tiny_corpus_is_rejected(tmp_path):
    (tmp_path / "t.txt").write_text("hola " * 50, encoding="utf-8")
    with pytest.raises(training.data.DataError, match="at least"):
        train(tiny_config(tmp_path, data=str(tmp_path / "t.txt")))


class Killed(BaseException):
    """kill -9 as the files see it: nothing after this point runs (no except, no cleanup that writes)."""


@pytest.mark.parametrize("module, victim", [(checkpoint, "atomic_save"), (training, "append_jsonl")],
                         ids=["checkpoint save", "metrics row"])
def test_a_kill_during_a_save_then_resume_leaves_no_step_twice_in_the_metrics(tmp_path, monkeypatch, module,
                                                                              victim):
    cfg = tiny_config(tmp_path, epochs=2.0)
    original, calls = getattr(module, victim), []

    def dies_the_second_time(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the save after step 20's evaluation
            raise Killed
        return original(*args, **kwargs)

    monkeypatch.setattr(module, victim, dies_the_second_time)
    with pytest.raises(Killed):
        train(cfg, log=lambda *_: None)
    monkeypatch.undo()
    result = train(TrainConfig(out=cfg.out), resume=True, log=lambda *_: None)
    metrics = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == [row["step"] for row in result.history]  # each evaluation once, none lost
    assert steps == sorted(set(steps)) and steps[:3] == [10, 20, 30] and steps[-1] == result.steps


def recording_bars(monkeypatch) -> list:
    """Replace the loop's tqdm with one that remembers every postfix and total it was given."""
    bars = []

    class RecordingBar(training.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.postfixes, self.totals = [], []
            bars.append(self)

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            self.postfixes.append(dict(ordered_dict or {}, **kwargs))
            self.totals.append(self.total)
            super().set_postfix(ordered_dict, refresh, **kwargs)

    monkeypatch.setattr(training, "tqdm", RecordingBar)
    return bars


@pytest.mark.parametrize("budget", [dict(epochs=1.0), dict(epochs=50.0, max_minutes=0.02)],
                         ids=["epochs", "time"])
def test_the_progress_bar_keeps_its_total_and_always_shows_the_step_and_loss(tmp_path, monkeypatch, budget):
    bars = recording_bars(monkeypatch)
    cfg = tiny_config(tmp_path, eval_every=10, **budget)
    result = train(cfg, log=lambda *_: None)
    bar = bars[0]
    assert len(set(bar.totals)) == 1  # never re-estimated (it once jumped from 0/3540 to 37 to 45)
    assert bar.n == pytest.approx(bar.total)  # and full at the end, whichever limit ended the run
    steps = [p for p in bar.postfixes if "step" in p]
    assert len(steps) >= result.steps and all("loss" in p for p in steps)  # from the first step on
    assert steps[-1]["step"] == result.steps


def test_a_run_whose_validation_loss_is_never_a_number_says_it_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "nats_per_char", lambda *a, **kw: float("nan"))
    with pytest.raises(ValueError, match="training diverged; try a lower --lr"):
        train(tiny_config(tmp_path, epochs=5.0, eval_every=5, patience=2), log=lambda *_: None)
