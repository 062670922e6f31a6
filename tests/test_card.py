"""The one model card: the same template from save_pretrained, push_to_hub and train.py's writer,
Hub-readable YAML with a model-index, the corpus as given, and the metrics read back as data."""
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard

from charrnn import hub
from charrnn.card import load_metrics, retarget
from charrnn.config import TrainConfig
from charrnn.corpus_profile import with_validation
from charrnn.data import CorpusInfo
from charrnn.generate import Settings, complete
from charrnn.training import describe_corpus
from conftest import ROOT, profile_of


def summary_of(model, data=None) -> dict:
    """What charrnn.training.train returns, as far as the card reads it."""
    cfg = TrainConfig.from_recipe("long", data=data)
    name = Path(data).name if data else "el_quijote.txt"
    corpus = CorpusInfo(name=name, source=str(data), default=data is None,
                        sha256="0" * 64, strip_accents=False, chars=10_000, vocab_size=len(model.vocab),
                        train_chars=8000, val_chars=2000, eval_chars=2000)
    return dict(config=cfg, model=model, val_loss=1.23456, steps=1234, minutes=2.5, best_step=1200,
                corpus=corpus, profile=profile_of(model, name, 1.23456, source=data))


def test_save_pretrained_writes_our_card_not_the_mixins_default(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "m")
    text = (tmp_path / "m" / "README.md").read_text(encoding="utf-8")
    data = ModelCard(text).data
    want = ("mit", None, "charrnn", "text-generation")
    assert (data.license, data.language, data.library_name, data.pipeline_tag) == want
    assert {"char-rnn", "text-generation", "lstm"} <= set(data.tags)
    assert "More Information Needed" not in text
    # installed from a checkout, truthfully: no package index has charrnn-quijote
    assert "pypi" not in text and "pip install charrnn-quijote" not in text and "checkout" in text
    assert f'CharRNN.from_pretrained("{tmp_path / "m"}")' in text  # the code loads what was saved
    assert data.eval_results is None and "## Metrics" not in text  # nothing measured, nothing claimed


def test_push_to_hub_card_names_the_repo_and_carries_the_metrics(tiny_model, monkeypatch):
    from huggingface_hub import HfApi

    sent = {}
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: SimpleNamespace(repo_id=repo_id))

    def upload_folder(self, *, repo_id, folder_path, **kw):  # the temp folder is gone after the call
        sent.update({p.name: p.read_bytes() for p in Path(folder_path).iterdir()})

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    tiny_model.push_to_hub("someone/tiny",
                           model_card_kwargs={"corpus": profile_of(tiny_model, "tiny.txt", 2.0)})
    assert {"config.json", "model.safetensors", "README.md"} <= set(sent)
    card = ModelCard(sent["README.md"].decode("utf-8"))
    assert 'CharRNN.from_pretrained("someone/tiny")' in card.text
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [
        ("nats_per_char", 2.0), ("bits_per_char", 2.8854)]


def test_train_card_has_the_model_index_samples_and_default_corpus(tiny_model):
    text = hub.model_card(summary_of(tiny_model), [("En un", " lugar")], "python train.py", "someone/q")
    card = ModelCard(text)
    assert card.data.datasets == ["el_quijote.txt"]
    assert card.data.model_name == "charrnn LSTM 2x32 (el_quijote.txt)"
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["nats_per_char"].metric_value == 1.2346 and results["bits_per_char"].metric_value == 1.7811
    assert results["nats_per_char"].dataset_split == "validation (last 20%, by position)"
    assert "**1.2346 nats/char** (1.7811 bits/char)" in text and "PyTorch tutorial's best" in text
    assert "10,000 chars after normalization; the first 80% for training, the last 20% for validation" in text
    assert "**Seed:** `'En un'`\n\n```text\nEn un lugar\n```" in text
    assert "Reproduce: `python train.py`" in text
    assert "don-quijote" in card.data.tags and 'from_pretrained("someone/q")' in text


def test_another_corpus_is_described_as_itself_without_the_tutorial(tiny_model):
    text = hub.model_card(summary_of(tiny_model, data="/texts/cartas.txt"), [],
                          "python train.py --data x", "w")
    card = ModelCard(text)
    assert card.data.datasets == ["cartas.txt"] and "don-quijote" not in card.data.tags
    assert "tutorial" not in text and "Cervantes" not in text and "`cartas.txt`, 10,000 chars" in text
    # its own text, as given
    assert "charrnn evaluate --weights w --data /texts/cartas.txt --split val" in text
    profile = summary_of(tiny_model, data="/texts/cartas.txt")["profile"]
    moved = retarget(text, "a/b", profile)
    assert "charrnn evaluate --weights a/b --data /texts/cartas.txt --split val" in moved
    assert load_metrics_of(text).dataset == "cartas.txt"


def load_metrics_of(text: str):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "README.md").write_text(text, encoding="utf-8")
        return load_metrics(Path(d) / "README.md")


def test_metrics_read_back_as_data(tiny_model, tmp_path):
    card = tiny_model.generate_model_card(corpus=profile_of(tiny_model, nats=1.5))
    (tmp_path / "README.md").write_text(str(card), encoding="utf-8")
    m = hub.card_metrics(tmp_path)
    assert (m.nats_per_char, m.bits_per_char, m.dataset) == (1.5, 2.1640, "el_quijote.txt")
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n## Metrics\n| 1.2 nats/char |\n",
                                        encoding="utf-8")
    assert hub.card_metrics(tmp_path) is None  # Markdown is not data
    assert hub.card_metrics(tmp_path / "nowhere") is None


def test_metrics_of_a_repo_id_come_from_the_cache_without_network(tiny_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    repo = tmp_path / "models--someone--q"
    (repo / "snapshots" / ("a" * 40)).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    card = tiny_model.generate_model_card(corpus=profile_of(tiny_model, nats=1.25))
    (repo / "snapshots" / ("a" * 40) / "README.md").write_text(str(card), encoding="utf-8")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert hub.card_metrics("someone/q").nats_per_char == 1.25
    assert hub.card_metrics("someone/other") is None


def test_shipped_card_is_hub_native():
    card = ModelCard.load(ROOT / "weights" / "README.md")
    m = load_metrics(ROOT / "weights" / "README.md")
    assert (m.nats_per_char, m.bits_per_char) == (1.1942, 1.7229)
    assert card.data.license == "mit" and card.data.datasets == ["el_quijote.txt"]
    assert "![loss curve](loss.png)" in card.text and "CharRNN.from_pretrained(\"weights\")" in card.text


def test_retarget_changes_only_the_usage(tiny_model):
    profile = profile_of(tiny_model, nats=1.5)
    text = str(tiny_model.generate_model_card(repo_id="weights", corpus=profile))
    moved = retarget(text, "someone/q", profile)
    assert moved.replace("someone/q", "weights") == text
    assert len(re.findall("someone/q", moved)) == 4  # from_pretrained, sample, evaluate, app


def test_generate_is_the_apps_sampled_text(tiny_model):
    out = complete(tiny_model, "En un lugar",
                   Settings(length=50, temperature=0.9, top_k=5, top_p=0.9, sampling_seed=7))
    text = tiny_model.generate("En un lugar", length=50, temperature=0.9, top_k=5, top_p=0.9, sampling_seed=7)
    assert text == out.sampled and len(text) == 50
    assert tiny_model.generate("En un lugar", length=50, temperature=0) == out.greedy


def test_generate_still_takes_the_sampling_seed_by_its_old_name_with_a_warning(tiny_model):
    with pytest.warns(FutureWarning, match=r"use sampling_seed=") as warned:
        old = tiny_model.generate("En un lugar", length=50, temperature=0.9, seed=7)
    assert old == tiny_model.generate("En un lugar", length=50, temperature=0.9, sampling_seed=7)
    assert warned[0].filename == __file__  # the warning points at the caller's line
    with pytest.raises(TypeError, match="both sampling_seed and seed"):
        tiny_model.generate("En un lugar", sampling_seed=7, seed=7)


def test_generate_refuses_bad_settings(tiny_model):
    with pytest.raises(ValueError, match="Temperature must be a number from 0 to 10"):
        tiny_model.generate("hola", temperature=-1)
    with pytest.raises(ValueError, match="Length must be a whole number"):
        tiny_model.generate("hola", length=0)


def test_a_hub_dataset_is_named_by_its_id_not_as_the_novel(tiny_model):
    summary = summary_of(tiny_model)
    summary["config"].dataset = "someone/cartas"  # read through `datasets`, not a local folder
    summary["corpus"] = replace(summary["corpus"], name="someone/cartas, column 'text'", default=False)
    corpus = SimpleNamespace(info=summary["corpus"], vocab=tiny_model.vocab, val_text=lambda chars: "")
    profile = describe_corpus(summary["config"], corpus, log=lambda *a: None)  # as training describes it
    summary["profile"] = with_validation(profile, 1.2, 2000, 2000, 0.2)
    text = hub.model_card(summary, [], "python train.py --dataset someone/cartas", "w")
    card = ModelCard(text)
    assert card.data.datasets == ["someone/cartas"] and "don-quijote" not in card.data.tags
    assert "tutorial" not in text and "Cervantes" not in text


@pytest.mark.parametrize("data", [None, "/texts/cartas.txt"], ids=["the novel", "another text"])
def test_the_card_says_the_validation_loss_read_only_the_start_of_a_large_split(tiny_model, data):
    summary = summary_of(tiny_model, data)
    summary["corpus"] = replace(summary["corpus"], eval_chars=500)  # --max-eval-chars 500 of 2,000
    # as training records it
    summary["profile"] = with_validation(summary["profile"], 1.23456, 500, 2000, 0.2)
    card = ModelCard(hub.model_card(summary, [], "python train.py --max-eval-chars 500", "w"))
    assert "validation loss (first 500 chars of the last 20% of the text, state carried" in card.text
    split = card.data.eval_results[0].dataset_split
    assert split == "validation (first 500 chars of the last 20%, by position)"

    # all 2,000 read
    whole = ModelCard(hub.model_card(summary_of(tiny_model, data), [], "python train.py", "w"))
    assert "validation loss (last 20% of the text, state carried" in whole.text
    assert "first 2,000" not in whole.text
