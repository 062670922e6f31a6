"""Each benchmark runs end to end with a tiny budget on a tiny model and text, so the scripts cannot
rot. The numbers mean nothing here; only that every script finishes, prints its table and writes
its section of the results file (plus its plot)."""
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.slow  # every benchmark runs as its own Python process
WORDS = ("en un lugar de la mancha cuyo nombre no quiero acordarme ha mucho tiempo que vivía hidalgo los "
         "lanza astillero adarga antigua rocín flaco galgo corredor sancho panza dijo señor caballero "
         "gigantes molinos viento").split()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A made-up text of ~7,000 chars (enough for every recipe's batch) and an untrained tiny model of it."""
    from charrnn.model import CharRNN
    from charrnn.text import Vocab

    folder = tmp_path_factory.mktemp("bench")
    rng = random.Random(0)
    sentences = []
    while sum(map(len, sentences)) < 7000:
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
        sentences.append(s.capitalize() + rng.choice([". ", ", ", ".\n", "? "]))
    text = folder / "tiny.txt"
    text.write_text("".join(sentences), encoding="utf-8")
    torch.manual_seed(0)
    weights = folder / "weights"
    CharRNN(Vocab.from_text(text.read_text(encoding="utf-8")).chars, cell="lstm", embed_dim=8, hidden_size=16,
            num_layers=2, dropout=0.1).save_pretrained(weights)
    return dict(text=text, weights=weights, results=folder / "RESULTS.md")


def run(script: str, *args) -> subprocess.CompletedProcess:
    # One OpenMP thread: tiny ops, and on a busy machine spinning threads cost far more than they give.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def section(results: Path, name: str) -> str:
    found = re.search(rf"<!-- bench:{re.escape(name)}:start -->(.*?)<!-- bench:{re.escape(name)}:end -->",
                      results.read_text(encoding="utf-8"), re.S)
    assert found, f"no {name} section in {results}"
    body = found.group(1)
    assert "Command: `python bench/" in body and "Machine:" in body and "Measured:" in body
    return body


def table_rows(body: str) -> list[list[str]]:
    """The data rows of the section's first markdown table."""
    lines = body.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2: end]]


def test_train_quality(tiny):
    proc = run("train_quality.py", "--minutes", 0.02, "--shrink", 8, "--windows", 50, "--data", tiny["text"],
               "--results", tiny["results"])
    body = section(tiny["results"], "train_quality_0.02min")
    rows = table_rows(body)
    assert [r[0] for r in rows[:3]] == ["ours (charrnn default)", "PyTorch tutorial recipe",
                                        "TensorFlow tutorial recipe"]
    for r in rows[:3]:
        assert float(r[4]) > 0 and re.fullmatch(r"\d+\.\d{4} ± \d+\.\d{3}", r[5]) and r[-1].endswith("x")
    assert (tiny["results"].parent / "train_quality_0.02min.png").stat().st_size > 1000
    assert "![" in body and "these are not the recipes" in body
    assert "supervised chars/s" in proc.stdout


def test_generate(tiny):
    run("generate.py", "--weights", tiny["weights"], "--runs", 1, "--length", 10, "--results",
        tiny["results"])
    body = section(tiny["results"], "generate")
    rows = table_rows(body)
    assert len(rows) == 3 and all(float(r[1].replace(",", "")) > 0 for r in rows)
    assert "`python app.py` after it serves its page" in body  # the app started and its memory was read


def test_app_load(tiny):
    run("app_load.py", "--weights", tiny["weights"], "--levels", "1,2", "--requests", 2, "--length", 50,
        "--timeout", 60, "--results", tiny["results"])
    rows = table_rows(section(tiny["results"], "app_load"))
    assert [r[0] for r in rows] == ["1", "2"]
    assert all(r[2] == "0" for r in rows)  # errors
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)  # p50 to the first chunk


def test_read_latency(tiny):
    run("read_latency.py", "--weights", tiny["weights"], "--data", tiny["text"], "--chars", 300, "--runs", 1,
        "--results", tiny["results"])
    body = section(tiny["results"], "read_latency")
    rows = table_rows(body)
    assert [r[0].split()[0] for r in rows] == ["`/score`", "`text_reading.read`", "one"]
    assert all(float(r[1].replace(",", "")) > 0 for r in rows)
    assert "(the same)" in body  # the app's total is what `python -m charrnn.evaluate` prints


def test_threads(tiny):
    run("threads.py", "--seconds", 0.05, "--rounds", 1, "--works", "step", "--results", tiny["results"])
    body = section(tiny["results"], "threads")
    rows = table_rows(body)
    assert len(rows) == 8 and {r[0] for r in rows} == {"quiet", "busy"}  # 4 settings x 2 cases
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)
    assert "the default reaches" in body and "avx512_bf16" in body  # the verdicts; the CPU's flags


def test_precision(tiny):
    run("precision.py", "--weights", tiny["weights"], "--data", tiny["text"], "--steps", 2, "--eval-every", 1,
        "--val-chars", 500, "--read-chars", 300, "--length", 10, "--results", tiny["results"])
    rows = table_rows(section(tiny["results"], "precision"))
    assert [r[0] for r in rows][:2] == ["training, val loss at step 1", "training, val loss at step 2"]
    assert any(r[0].startswith("generation, greedy texts agree") for r in rows)


def test_style(tiny):
    run("style.py", "--weights", tiny["weights"], "--data", tiny["text"], "--adapt-chars", 300,
        "--score-chars", 200, "--results", tiny["results"])
    body = section(tiny["results"], "style")
    rows = table_rows(body)
    assert [r[0] for r in rows] == ["novel", "carta", "noticia", "english"]
    assert all(float(r[2]) > 0 and float(r[3]) > 0 for r in rows)
    assert "CPU (lscpu):" in body and "- adapted, sampled:" in body


def test_quality(tiny):
    run("quality.py", "--weights", tiny["weights"], "--data", tiny["text"], "--length", 60, "--samples", 1,
        "--windows", 20, "--results", tiny["results"])
    rows = table_rows(section(tiny["results"], "quality"))
    assert rows[0][0].startswith("shipped") and float(rows[0][2]) > 0 and rows[0][5].endswith("%")
    assert rows[-1][0] == "the novel itself (validation text)"


def test_sections_are_replaced_not_repeated(tmp_path):
    sys.path.insert(0, str(ROOT))
    from bench.common import write_section

    path = tmp_path / "R.md"
    write_section("a", "first", path)
    write_section("b", "other", path)
    write_section("a", "second", path)
    text = path.read_text(encoding="utf-8")
    assert text.count("bench:a:start") == 1 and "second" in text and "first" not in text and "other" in text


def test_visitors(tiny):
    run("visitors.py", "--weights", tiny["weights"], "--chars", 300, "--rounds", 1, "--flood", 10,
        "--length", 50, "--results", tiny["results"])
    body = section(tiny["results"], "visitors")
    rows = table_rows(body)
    assert [r[0].split(",")[0] for r in rows] == ["`/generate`", "`/score`"]
    assert all(r[3].endswith("x") and float(r[3][:-1]) > 0 for r in rows)
    assert "0 answered 503" in body and "avx2 " in body
