"""Training with several processes (torchrun, DistributedDataParallel) on the CPU with gloo: the
ranks stay identical, rank 0 alone writes, --resume continues. Plus the parts, without processes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from charrnn import distributed, training
from charrnn.config import TrainConfig
from conftest import ROOT, make_text

TINY = ["--cell", "gru", "--embed-dim", "16", "--hidden-size", "32", "--num-layers", "1", "--batch-size", "4",
        "--seq-len", "32", "--eval-every", "10", "--eval-rows", "4", "--lr", "0.01", "--dropout", "0.1"]


def torchrun(*args, nproc=2, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(nproc), str(ROOT / "tests" / "ddp_probe.py"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)


def rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_gloo_ranks_stay_identical_and_rank0_alone_writes(tmp_path):
    text = make_text(tmp_path / "text.txt", n_chars=12_000)
    out = tmp_path / "w"
    proc = torchrun("--data", str(text), "--out", str(out), "--epochs", "1", *TINY)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}-params.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # DDP kept them in step
    metrics = rows(out)
    assert metrics and all(row["world_size"] == 2 for row in metrics)
    steps = training.steps_per_epoch(TrainConfig(batch_size=4, seq_len=32),
                                     int(len(text.read_text()) * 0.8), 2)
    assert metrics[-1]["step"] == steps  # the 2 x 4 rows' epoch: half the steps of 4 rows each
    written = load_file(out / "model.safetensors")
    best = min(metrics, key=lambda row: row["val_loss"])
    # so the weights written are those the loop ended with
    assert best["step"] == metrics[-1]["step"], metrics
    assert all(torch.equal(written[k], ranks[0][k]) for k in written)
    assert proc.stdout.count("wrote ") == 1 and proc.stdout.count("parameters, corpus") == 1  # rank 0 alone


@pytest.mark.slow
def test_a_stop_on_any_rank_stops_all_then_resume_under_torchrun(tmp_path):
    text = make_text(tmp_path / "text.txt", n_chars=12_000)
    out = tmp_path / "w"
    args = ["--data", str(text), "--out", str(out), "--epochs", "1", *TINY]
    stopped = torchrun(*args, env={"PROBE_STOP": "1:13"})  # rank 1's "Ctrl-C" at step 13
    assert stopped.returncode != 0 and "interrupted at step 13" in stopped.stderr, stopped.stderr[-3000:]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["progress"]["step"] == 13 and ckpt["progress"]["world_size"] == 2
    assert ckpt["rnn_state"].shape == (1, 8, 32)  # both ranks' 4 rows of carried state

    resumed = torchrun("--resume", "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from step 13" in resumed.stdout
    ranks = [torch.load(out / f"rank{r}-params.pt") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    metrics = rows(out)
    steps = [row["step"] for row in metrics]
    assert steps == sorted(set(steps)) and steps[-1] > 13 and all(row["world_size"] == 2 for row in metrics)


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda", "nccl"), ("cuda:1", "nccl")])
def test_backend_follows_the_device(device, backend):
    assert distributed.backend_for(device) == backend
    assert distributed.backend_for(torch.device(device)) == backend


def test_ranks_take_their_own_rows_of_the_batch():
    """Rank r of W takes rows [r*B, (r+1)*B) of the W*B rows: together, one process's batch."""
    ids = np.arange(5000, dtype=np.uint16) % 251
    cfg = TrainConfig(batch_size=3, seq_len=16)
    for chunk in (0, 7):
        whole_x, whole_y = training.get_batch(ids, TrainConfig(batch_size=6, seq_len=16), 1, chunk, "cpu")
        parts = [training.get_batch(ids, cfg, 1, chunk, "cpu", rank, 2) for rank in (0, 1)]
        assert torch.equal(torch.cat([x for x, _ in parts]), whole_x)
        assert torch.equal(torch.cat([y for _, y in parts]), whole_y)
    one_process = TrainConfig(batch_size=6, seq_len=16)
    assert training.steps_per_epoch(cfg, 5000, 2) == training.steps_per_epoch(one_process, 5000)


def test_one_process_makes_no_collective_calls():
    assert not torch.distributed.is_initialized()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    state = torch.randn(1, 4, 8)
    assert distributed.gather_rows(state) is state and distributed.my_rows(state, 4) is state
    assert distributed.sync_step(3.5, 1.25, False, torch.device("cpu")) == (3.5, 1.25, False)
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model) is model


def test_resumed_by_another_number_of_processes_the_run_starts_the_next_epoch(tmp_path):
    """A checkpoint of 2 ranks (8 rows of carried state) resumed by one process: its rows are cut
    anew, so the carried state is dropped and the run continues at the next epoch's start."""
    from charrnn.checkpoint import RunState, restore_checkpoint, save_checkpoint
    from charrnn.text import Vocab

    cfg = TrainConfig(cell="gru", embed_dim=8, hidden_size=16, num_layers=1, batch_size=4, seq_len=16)
    vocab = Vocab.from_text("abcdefgh ")
    model = training.build_model(cfg, vocab)
    optimizer = training.build_optimizer(cfg, model)
    run = RunState(step=30, epoch=2, chunk_index=5, world_size=2, carried=torch.randn(1, 8, 16))
    save_checkpoint(tmp_path / "c.pt", cfg, vocab, model, optimizer, run)
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)

    same = restore_checkpoint(ckpt, vocab, model, optimizer, cfg, tmp_path / "c.pt", world_size=2)
    assert (same.epoch, same.chunk_index, same.carried.shape) == (2, 5, (1, 8, 16))
    other = restore_checkpoint(ckpt, vocab, model, optimizer, cfg, tmp_path / "c.pt", world_size=1)
    assert (other.step, other.epoch, other.chunk_index, other.carried,
            other.world_size) == (30, 3, 0, None, 1)
