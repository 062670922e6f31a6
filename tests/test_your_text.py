"""Your text, your model, your Space, end to end: a small English text made here, ~20 s of training,
then the card, the page in a real browser, its endpoints and the Space's dry run all speak of that
text and never of the novel. The shipped weights, through the same path, keep the novel's page."""
import ast
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from charrnn import corpus_profile
from charrnn.card import load_metrics
from charrnn.hub import load_model
from conftest import ROOT, connect

NOVEL = ["Quijote", "Cervantes", "Spanish", "Mancha"]
WORDS = ("the release fixes a crash when saving large files and adds options for the editor people asked "
         "about this version brings faster search better colours new keys that open close move lines").split()


def english_text(n_chars: int = 40_000, seed: int = 0) -> str:
    """Release notes: capitalised sentences, numbers, quotes and brackets, one release per paragraph."""
    rng = random.Random(seed)
    out, version = [], 1
    while sum(map(len, out)) < n_chars:
        words = rng.choices(WORDS, k=rng.randint(5, 12))
        if rng.random() < 0.2:
            words.insert(rng.randint(0, len(words)), f'"{rng.choice(WORDS)}"')
        if rng.random() < 0.2:
            words.insert(rng.randint(0, len(words)), f"({rng.choice(WORDS)} {rng.randint(2, 99)})")
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", "!"]) + " ")
        if rng.random() < 0.15:
            version += 1
            out.append(f"\n\nVersion {version}.{rng.randint(0, 9)}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def mine(tmp_path_factory) -> Path:
    """`charrnn train --data notes.txt --out runs/mine` for ~20 s of a small GRU, run as a user runs it."""
    root = tmp_path_factory.mktemp("yours")
    (root / "notes.txt").write_text(english_text(), encoding="utf-8")
    args = [sys.executable, "-m", "charrnn.cli", "train", "--data", "notes.txt", "--out", "runs/mine",
            "--recipe", "short", "--hidden-size", "128", "--embed-dim", "32", "--batch-size", "16",
            "--seq-len", "64", "--eval-every", "100", "--max-minutes", "0.33"]
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    (root / "stdout.txt").write_text(proc.stdout, encoding="utf-8")
    return root / "runs" / "mine"


def page_text(browser, url: str) -> tuple[str, object]:
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url, wait_until="networkidle")
    return page.content(), page


def read_reference(page, text: str) -> str:
    """The Read tab's totals for `text`, read in the browser."""
    page.get_by_role("tab", name="Read a text").click()
    page.locator("#read-text textarea").fill(text)
    page.locator("#read-go").click()
    page.wait_for_function("document.querySelector('#read-totals').innerText.includes('nats/char')",
                           timeout=60_000)
    return page.locator("#read-totals").inner_text()


@pytest.mark.slow
def test_a_model_of_your_own_text_speaks_of_that_text(mine, browser, launch_app):
    profile = corpus_profile.load(mine)
    card = (mine / "README.md").read_text(encoding="utf-8")
    # The card: its language, its samples from the text's own seeds, its usage as the user typed it.
    assert ModelCard(card).data.language == "en" and profile.language == "en" and len(profile.seeds) >= 3
    samples = re.findall(r"\*\*Seed:\*\* `(.*?)`", card)
    assert samples and [ast.literal_eval(s) for s in samples] == list(profile.seeds[:len(samples)])
    assert all(seed in english_text() for seed in profile.seeds)
    assert 'CharRNN.from_pretrained("runs/mine")' in card and "--data notes.txt" in card
    assert not [w for w in NOVEL if w in card]
    hint = (mine.parent.parent / "stdout.txt").read_text(encoding="utf-8").splitlines()[-1]
    assert f"--seed-text '{profile.seeds[0]}'" in hint

    # The page, in a real browser: nothing of the novel, the text's examples, its own reference score.
    model = load_model(mine)
    url = launch_app(model, str(mine))
    html, page = page_text(browser, url)
    assert not [w for w in NOVEL if w in html], [w for w in NOVEL if w in html]
    assert profile.seeds[0] in page.locator("body").inner_text()  # offered as an example
    nats = load_metrics(mine / "README.md").nats_per_char
    totals = read_reference(page, profile.passages[0])
    assert f"the model's validation score from its model card: {nats:.4f} nats/char" in totals

    # The endpoints answer for text made of the model's own characters.
    client = connect(url)
    own = "".join(sorted(set(model.vocab.chars) - {"\n"})) * 3
    _, _, summary, _ = client.predict(own, False, api_name="/score")
    assert summary["unknown_chars"] == 0 and summary["nats_per_char"] > 0
    view, info, ranking = client.predict(own, 0, api_name="/inside")
    assert "Unit **0**" in info and ranking["data"]
    assert not [w for w in NOVEL if w in json.dumps(ranking) + info]


@pytest.mark.slow
def test_the_space_dry_run_lists_your_weights(mine, capsys):
    from charrnn import space

    assert space.main(["someone/notes", "--weights", str(mine), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for name in ("config.json", "model.safetensors", "README.md", "corpus.json", "loss.png", "metrics.jsonl"):
        assert f" weights/{name}\n" in out
    assert "title: charrnn notes\n" in out and not [w for w in NOVEL if w in out]


@pytest.mark.slow
def test_the_shipped_weights_keep_the_novels_page(browser, launch_app):
    shipped = ROOT / "weights"
    profile = corpus_profile.load(shipped)
    url = launch_app(load_model(shipped), str(shipped))
    html, page = page_text(browser, url)
    body = page.locator("body").inner_text()
    assert "Don Quijote" in body and all(seed in html for seed in profile.seeds)  # offered (shown shortened)
    nats = load_metrics(shipped / "README.md").nats_per_char
    assert f"{nats:.4f} nats/char" in read_reference(page, profile.passages[1])
