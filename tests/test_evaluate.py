"""charrnn.evaluate, the CLI: its JSON, its settings, its one-line errors; bench/compressors.py on top."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from charrnn import evaluate
from charrnn.adaptive import Adapt
from charrnn.mixing import Mix
from conftest import PHRASE, ROOT, TINY_TEXT


def weights_hash(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def run_cli(capsys, *argv):
    code = evaluate.main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_adapt_reports_its_settings_and_never_writes_the_weights(tiny_model_dir, tmp_path, capsys,
                                                                     one_thread):
    text = tmp_path / "t.txt"
    text.write_text(PHRASE, encoding="utf-8")
    before = weights_hash(tiny_model_dir)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, "--device", "cpu")
    assert code == 0, err
    static = json.loads(out)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, "--device", "cpu",
                             "--adapt", "--adapt-lr", "0.01", "--adapt-decay", "0.001",
                             "--adapt-learn", "top")
    assert code == 0, err
    adaptive = json.loads(out)
    assert static["adaptive"] is False and "adapt" not in static
    assert adaptive["adaptive"] is True and adaptive["adapt"] == {"method": "adam+decay", "lr": 0.01,
                                                                  "decay": 0.001,
                                                                  "chunk": Adapt.chunk, "learn": "top"}
    assert adaptive["chars"] == static["chars"] == len(PHRASE)
    assert adaptive["nats_per_char"] < static["nats_per_char"]
    assert weights_hash(tiny_model_dir) == before


def test_cli_reads_the_default_corpus_and_shows_progress_on_long_texts(tiny_model_dir, tmp_path, capsys,
                                                                       monkeypatch, one_thread):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_TEXT * 4, encoding="utf-8")
    monkeypatch.setattr("charrnn.data.find_corpus", lambda: corpus)
    monkeypatch.setattr(evaluate, "PROGRESS_FROM", 1000)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["chars"] == len(TINY_TEXT * 4)
    assert "char" in err and "%" in err  # tqdm's bar on stderr, the JSON alone on stdout


@pytest.mark.parametrize("flags,message", [(["--adapt", "--adapt-lr", "-1"], "learning rate must be"),
                                           (["--adapt", "--adapt-decay", "1"], "decay toward"),
                                           (["--max-chars", "1"], "at least 2"),
                                           (["--mix", "--mix-orders", "2,x"], "--mix-orders must be"),
                                           (["--mix", "--mix-orders", "0"], "--mix-orders must be"),
                                           (["--mix", "--mix-prior", "/no/such.txt"], "no such file")])
def test_cli_bad_settings_one_line_exit_2(tiny_model_dir, tmp_path, capsys, flags, message):
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, *flags)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_cli_mix_primes_the_counts_and_records_the_settings(tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                            one_thread):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PHRASE * 5, encoding="utf-8")
    monkeypatch.setattr("charrnn.data.find_corpus", lambda: corpus)
    runs = {}
    for name, flags in {"adapt": ["--adapt"], "mix": ["--mix", "--mix-orders", "2,4"],
                        "unprimed": ["--mix", "--mix-orders", "2,4", "--mix-prior", "none"]}.items():
        code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--split", "val", "--device",
                                 "cpu", *flags)
        assert code == 0, err
        runs[name] = json.loads(out)
    train_chars = len(PHRASE * 5) - len(PHRASE * 5) // 5
    assert runs["mix"]["adapt"]["mix"] == {"orders": [2, 4], "discount": Mix.discount,
                                           "strength": Mix.strength, "lr": Mix.lr, "prior_chars": train_chars}
    assert runs["unprimed"]["adapt"]["mix"]["prior_chars"] == 0 and runs["adapt"]["adaptive"] is True
    assert runs["mix"]["nats_per_char"] < runs["unprimed"]["nats_per_char"] < runs["adapt"]["nats_per_char"]


@pytest.mark.slow
def test_bench_compressors_writes_its_table(tiny_model_dir, tmp_path):
    """bench/compressors.py end to end on a tiny text, with the standard library's compressors only."""
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT * 10, encoding="utf-8")
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "bench/compressors.py", "--weights", str(tiny_model_dir),
                           "--data", str(text), "--max-chars", "300", "--only", "gzip,bz2,xz", "--no-install",
                           "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = results.read_text(encoding="utf-8")
    for row in ["charrnn static", "charrnn adaptive (", "charrnn adaptive + counts", "gzip -9",
                "bzip2 -9", "xz -9e"]:
        assert row in body
    assert "zpaq" not in body.split("| reader")[1].split("- Text")[0]  # not asked for, so not in the table
