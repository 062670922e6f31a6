"""python -m charrnn.sample: prints the continuation, reproducibly, and fails with a clear message."""
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.generate import Settings, complete
from charrnn.sample import main
from conftest import ROOT, SEED

pytestmark = pytest.mark.usefixtures("one_thread")


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_sampled_continuation_reproducibly(capsys, tiny_model_dir, tiny_model):
    args = ["--weights", str(tiny_model_dir), "--seed-text", SEED, "--length", "120", "--temperature", "0.9",
            "--top-k", "20", "--top-p", "0.95", "--sampling-seed", "3"]
    code, out, err = run(capsys, *args)
    want = complete(tiny_model, SEED, Settings(120, 0.9, 20, 0.95, 3))
    assert code == 0 and out == SEED + want.sampled + "\n"
    assert run(capsys, *args)[1] == out


def test_greedy_flag_prints_the_greedy_continuation(capsys, tiny_model_dir, tiny_model):
    code, out, _ = run(capsys, "--weights", str(tiny_model_dir), "--seed-text", SEED, "--length",
                       "50", "--greedy")
    assert code == 0 and out == SEED + complete(tiny_model, SEED, Settings(50, 0)).greedy + "\n"


def test_both_prints_greedy_and_sampled(capsys, tiny_model_dir, tiny_model):
    code, out, _ = run(capsys, "--weights", str(tiny_model_dir), "--seed-text", SEED, "--length", "40",
                       "--sampling-seed", "1", "--both")
    want = complete(tiny_model, SEED, Settings(40, 0.8, sampling_seed=1))
    assert code == 0 and "--- greedy ---" in out and SEED + want.greedy in out and SEED + want.sampled in out


def test_random_run_tells_its_sampling_seed_and_it_replays(capsys, tiny_model_dir):
    code, out, err = run(capsys, "--weights", str(tiny_model_dir), "--seed-text", SEED, "--length", "60")
    assert code == 0 and "--sampling-seed" in err
    seed = err.split("--sampling-seed ")[1].split(" ")[0]
    again = run(capsys, "--weights", str(tiny_model_dir), "--seed-text", SEED, "--length", "60",
                "--sampling-seed", seed)[1]
    assert again == out


def test_unknown_chars_and_empty_seed_are_reported_on_stderr(capsys, tiny_model_dir):
    code, out, err = run(capsys, "--weights", str(tiny_model_dir), "--seed-text", "kiwi ™", "--length", "10")
    assert code == 0 and "note: Dropped" in err and "'k'" in err and "'™'" in err
    assert out.startswith("ii ") and len(out) == len("ii ") + 10 + 1
    code, out, err = run(capsys, "--weights", str(tiny_model_dir), "--length", "10")
    assert code == 0 and "empty" in err and out.startswith("\n")


@pytest.mark.parametrize("args, says", [
    (["--temperature", "-1"], "Temperature must be"),
    (["--length", "0"], "Length must be"),
    (["--top-p", "2"], "Top-p must be"),
    (["--device", "tpu"], "unknown device"),
])
def test_bad_settings_exit_2_with_a_message(capsys, tiny_model_dir, args, says):
    code, out, err = run(capsys, "--weights", str(tiny_model_dir), *args)
    assert code == 2 and out == "" and err.startswith("error: ") and says in err


def test_a_tiny_temperature_samples_greedily(capsys, tiny_model_dir):
    common = ["--weights", str(tiny_model_dir), "--seed-text", SEED, "--length", "40"]
    code, out, err = run(capsys, *common, "--temperature", "1e-38", "--sampling-seed", "0")
    assert code == 0 and "Error" not in err
    assert out == run(capsys, *common, "--greedy")[1]


def test_missing_or_corrupt_weights_exit_2_with_a_message(capsys, tmp_path, tiny_model_dir):
    code, _, err = run(capsys, "--weights", str(tmp_path / "nowhere"))
    assert code == 2 and "no weights folder" in err
    (tmp_path / "config.json").write_text((Path(tiny_model_dir) / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    code, _, err = run(capsys, "--weights", str(tmp_path))
    assert code == 2 and "could not load weights" in err


@pytest.mark.slow
def test_runs_as_a_module(tiny_model_dir):
    done = subprocess.run([sys.executable, "-m", "charrnn.sample", "--weights", str(tiny_model_dir),
                           "--seed-text", SEED, "--length", "30", "--sampling-seed", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(SEED) and len(done.stdout) == len(SEED) + 30 + 1


def test_help_as_charrnn_sample_shows_that_command_and_the_defaults(capsys, monkeypatch):
    from charrnn import cli

    with pytest.raises(SystemExit):
        cli.main(["sample", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: charrnn sample ") and "python -m" not in out
    assert "(default: 300)" in out and "(default: 0.8)" in out and "(default: weights)" in out
    assert "(default: None)" not in out and "(default: False)" not in out
