"""The one thread rule (issue 23, item 1): OpenMP's threads wait passively, set before torch loads,
and torch's thread count per kind of work, the user's OMP_NUM_THREADS first."""
import os
import subprocess
import sys

import pytest

from charrnn import threads
from conftest import ROOT


def python_says(code: str, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], env={**clean, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout.strip()


@pytest.mark.slow
def test_importing_charrnn_first_makes_openmp_wait_passively():
    code = "import charrnn, os; print(os.environ.get('OMP_WAIT_POLICY'))"
    assert python_says(code) == "PASSIVE"
    assert python_says(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"  # the user's setting wins
    late = ("import torch, charrnn, os; "
            "print(os.environ.get('OMP_WAIT_POLICY'), charrnn.threads.TORCH_LOADED_FIRST)")
    assert python_says(late) == "None True"  # too late to matter: it does not pretend


def test_steps_get_one_thread_training_every_core_reading_shares_them_among_layers(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 6)
    assert [threads.threads_for(w) for w in ("train", "read", "step")] == [6, 6, 1]
    assert threads.threads_for("read", sharing=2) == 3  # the static read: a thread per layer shares the cores
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.threads_for("read", sharing=3) == 1  # never none


def test_the_users_omp_num_threads_wins_for_every_kind_of_work(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert [threads.threads_for(w) for w in ("train", "read", "step")] == [3, 3, 3]
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a number: as if unset
    assert threads.threads_for("step") == 1


def test_configure_sets_torchs_thread_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    try:
        assert threads.configure("train") == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
