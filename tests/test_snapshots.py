"""Snapshots of the weights as a run learns (charrnn/snapshots.py): taken at the moments asked
for, loaded back through the one loading path, pushed and deployed with the weights."""
import json
import math

import pytest
import torch

from charrnn import hub, weights
from charrnn.config import snapshot_moments
from charrnn.generate import Settings, complete
from charrnn.snapshots import Keeper, find_snapshots
from charrnn.training import TrainConfig, chunks_in_epoch, planned_steps, train
from conftest import tiny_config


def test_a_run_keeps_a_snapshot_at_each_moment_asked_for(trained):
    result, out = trained
    cfg, n_train = result.config, result.corpus.train_chars
    found = find_snapshots(out)
    taken = {m: s for s in found for m in s.moments}
    assert sorted(taken) == ["5", "best", "epoch1", "half"] and found[-1].moments == ("best",)
    first, best = taken["5"], taken["best"]
    assert first.step == 5 and first.name == "step-000005"
    assert first.weights == out / "snapshots" / "step-000005"
    assert taken["epoch1"].step == chunks_in_epoch(cfg, n_train, 0)  # the step that ended the first epoch
    assert taken["half"].step == math.ceil(planned_steps(cfg, n_train) / 2)  # the first step at half the run
    assert best.step == result.best_step and best.weights == out
    assert best.val_loss == round(result.val_loss, 4)
    assert first.val_loss > taken["half"].val_loss  # it learned in between
    assert 0 < first.minutes <= taken["half"].minutes and first.epoch < taken["half"].epoch
    assert not (out / "snapshots" / "best" / "model.safetensors").exists()  # the folder's own: not twice


def test_a_snapshot_is_half_precision_and_loads_through_load_model(trained):
    result, out = trained
    first = find_snapshots(out)[0]
    header = weights.load_header(first.weights / "model.safetensors")
    assert {dtype for _, dtype in header.values()} == {"F16"}
    model = first.load()
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    files = sorted(p.name for p in first.weights.iterdir())
    assert files == ["config.json", "model.safetensors", "snapshot.json"]
    assert json.loads((first.weights / "snapshot.json").read_text())["step"] == 5


def test_a_snapshot_writes_the_same_text_for_the_same_seeds_and_not_what_the_best_writes(trained):
    _, out = trained
    first, best = find_snapshots(out)[0], find_snapshots(out)[-1]
    settings = Settings(length=80, temperature=0.8, sampling_seed=7)
    once, again = (complete(first.load(), "En un lugar", settings) for _ in range(2))
    assert (once.greedy, once.sampled) == (again.greedy, again.sampled)
    later = complete(best.load(), "En un lugar", settings)
    assert (later.greedy, later.sampled) != (once.greedy, once.sampled)


def test_none_keeps_no_snapshots_and_a_fresh_run_removes_an_earlier_runs(tmp_path):
    train(tiny_config(tmp_path, snapshots="3"), log=lambda *_: None)  # an earlier run in the same folder
    assert [s.step for s in find_snapshots(tmp_path / "out")] == [3]
    train(tiny_config(tmp_path, snapshots="none"), log=lambda *_: None)
    assert not (tmp_path / "out" / "snapshots").exists() and find_snapshots(tmp_path / "out") == []


def test_moments_are_crossed_once_on_their_own_scale(tmp_path):
    keeper = Keeper(TrainConfig(snapshots="3,epoch2,25%,half"), tmp_path, 10, step=0, epoch=0, progress=0.0)
    assert keeper.due(2, 0, 0.1) == [] and keeper.due(3, 0, 0.15) == ["3"]
    assert keeper.due(4, 0, 0.3) == ["25%"] and keeper.due(5, 0, 0.35) == []
    assert keeper.due(20, 2, 0.6) == ["epoch2", "half"]
    resumed = Keeper(TrainConfig(snapshots="3,half"), tmp_path, 10, step=4, epoch=0, progress=0.4)
    assert resumed.due(5, 0, 0.5) == ["half"]  # 3 was taken before the stop: not again


@pytest.mark.parametrize("spec", ["soon", "epoch", "0", "150%", "epoch1%", "1.5"])
def test_a_moment_that_is_none_of_the_kinds_is_named(spec):
    with pytest.raises(ValueError, match=f"snapshots: '{spec}' is not a moment"):
        TrainConfig(snapshots=f"100,{spec}").validate()
    assert snapshot_moments(" None ") == () and snapshot_moments("100, best,100") == ("100", "best")


def test_snapshots_are_pushed_and_deployed_with_the_weights(trained, tmp_path, hub_calls):
    from charrnn import space

    _, out = trained
    hub.push(out, "someone/quijote-rnn")
    files = hub_calls[1][2]["files"]
    expected = {f"snapshots/{name}/{f}" for name in ("step-000005", find_snapshots(out)[1].name)
                for f in ("config.json", "model.safetensors", "snapshot.json")}
    expected |= {"snapshots/best/snapshot.json"}
    assert expected <= set(files) and "checkpoint.pt" not in files
    assert {f"weights/{f}" for f in expected} <= set(space.space_contents(out))


def test_a_hub_repo_s_snapshots_come_from_the_cache_offline(trained, tmp_path, monkeypatch):
    _, out = trained
    cache = tmp_path / "cache"  # the layout huggingface_hub reads offline (see test_hub._cache_with)
    repo = cache / "models--someone--quijote"
    commit = repo / "snapshots" / ("0123456789" * 4)
    for path in [p for p in out.rglob("*") if p.is_file()]:
        (commit / path.relative_to(out)).parent.mkdir(parents=True, exist_ok=True)
        (commit / path.relative_to(out)).write_bytes(path.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit.name)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    found = find_snapshots("someone/quijote")
    assert [s.step for s in found] == [s.step for s in find_snapshots(out)]
    assert found[-1].weights == commit and found[0].load().num_params() > 0
    assert find_snapshots("nobody/nothing", log=lambda *_: None) == []  # not cached, offline: none, no error
