"""--max-minutes covers the whole run (evaluations and the final exact score included), and a short
run's loss plot shows its training curve and names the machine it ran on (issue 23, item 4)."""
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch

from charrnn import budget, device, hub, training
from charrnn.validation import nats_per_char
from conftest import tiny_config

SLOW_FINAL_S_PER_CHAR = 1.5e-3  # the exact read made slow: 6 s for the tiny corpus's 4,004 validation chars


def slow_exact_reads(monkeypatch):
    """The exact (one-row) read, as slow per char as a big model's on a CPU; where the budget
    did not keep room for it, the run overran by its whole length."""
    def slow(model, ids, rows=1, **kw):
        if rows == 1:
            time.sleep(SLOW_FINAL_S_PER_CHAR * len(ids))
        return nats_per_char(model, ids, rows=rows, **kw)

    monkeypatch.setattr(training, "nats_per_char", slow)
    monkeypatch.setattr(budget, "nats_per_char", slow)


def test_the_budget_covers_the_final_score_and_the_evaluations(tmp_path, monkeypatch):
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: seconds
    slow_exact_reads(monkeypatch)
    # 18 s, bound by time alone: on a quick CPU the tiny model stops improving within them, and an
    # early stop would end the run before the budget is tested
    cfg = tiny_config(tmp_path, epochs=1000.0, max_minutes=0.3, eval_every=25, patience=1_000_000)
    logs = []
    result = training.train(cfg, log=logs.append)
    assert result.stop_reason == "budget" and result.steps > 0
    final_s = SLOW_FINAL_S_PER_CHAR * result.corpus.eval_chars
    assert final_s > 0.25 * cfg.max_minutes * 60  # what the budget had to keep room for
    assert result.minutes <= cfg.max_minutes * 1.15, logs  # the run's own clock: the budget, a little slack
    assert any("budget covers the whole run" in line for line in logs)  # and said so at start


def test_a_short_run_plots_its_training_curve_not_one_dot(tmp_path):
    cfg = tiny_config(tmp_path, epochs=2.0, eval_every=10_000)  # one evaluation, at the end
    result = training.train(cfg, log=lambda *_: None)
    assert len(result.history) == 1
    minutes, losses = hub.training_curve(result.history)
    assert len(minutes) >= 20 and minutes == sorted(minutes)
    assert losses[-1] < losses[0]  # it learned, and the curve shows it


def test_the_plot_names_the_machine_it_ran_on_not_a_2_core_cpu(tmp_path, monkeypatch):
    figures = []
    subplots = plt.subplots
    monkeypatch.setattr(plt, "subplots", lambda *a, **kw: figures.append(subplots(*a, **kw)) or figures[-1])
    monkeypatch.setattr(plt, "close", lambda fig: None)
    history = [{"step": 10, "elapsed_s": 6.0, "train_loss": 2.0, "val_loss": 2.1,
                "train_points": [[i, 0.6 * i, 3.0 - 0.1 * i] for i in range(1, 11)]}]
    hub.plot_losses(history, tmp_path / "loss.png", "a run", machine="Some CPU 9000")
    ax = figures[0][1]
    assert ax.get_xlabel() == "minutes of the run (Some CPU 9000)"
    assert len(ax.get_lines()[0].get_xdata()) == 10  # the training curve: every point
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_machine_name_is_this_cpus_model_name():
    name = device.machine_name("cpu")
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        listed = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo model name here")
    assert name and name in listed
