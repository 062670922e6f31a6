import json
from pathlib import Path

import pytest
import torch

from charrnn.hub import UPLOAD_FILES, WeightsError, load_model, push, save_weights
from charrnn.model import CharRNN
from charrnn.text import Vocab

VOCAB = Vocab.from_text("¿Qué tal, señor? ¡Bien! Dulcinea del Toboso.\n").chars


@pytest.fixture(params=["gru", "lstm"])
def model(request):
    torch.manual_seed(0)
    return CharRNN(VOCAB, cell=request.param, embed_dim=8, hidden_size=16, num_layers=2, dropout=0.1).eval()


def test_save_and_load_give_identical_outputs(model, tmp_path):
    save_weights(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert config["vocab"] == VOCAB and "ñ" in config["vocab"]  # the vocabulary travels with the weights
    assert config["cell"] == model.cell and config["hidden_size"] == 16
    loaded = load_model(tmp_path)
    assert not loaded.training
    ids = torch.tensor([model.vocab.encode("¿Qué tal, señor?")])
    with torch.no_grad():
        (a, sa, _), (b, sb, _) = model(ids), loaded(ids)
    assert torch.equal(a, b)
    assert torch.equal(torch.as_tensor(sa[0] if isinstance(sa, tuple) else sa),
                       torch.as_tensor(sb[0] if isinstance(sb, tuple) else sb))


def test_load_errors_are_clear(model, tmp_path):
    with pytest.raises(WeightsError, match="no weights folder"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="missing config.json, model.safetensors"):
        load_model(tmp_path / "empty")

    save_weights(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="could not load weights"):
        load_model(tmp_path / "m")

    save_weights(model, tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_model(tmp_path / "c")

    # weights that do not match their config (strict loading, not silently half-initialized)
    save_weights(model, tmp_path / "s")
    cfg = json.loads((tmp_path / "s" / "config.json").read_text(encoding="utf-8"))
    cfg["hidden_size"] = 32
    (tmp_path / "s" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(WeightsError, match="could not load"):
        load_model(tmp_path / "s")


def test_push_uploads_weights_and_card_to_the_repo(model, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    save_weights(model, tmp_path)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# card\n", encoding="utf-8")
    (tmp_path / "checkpoint.pt").write_bytes(b"not for upload")
    calls = {}

    def fake_create_repo(self, repo_id, **kw):
        calls["create"] = (repo_id, kw)
        return f"https://huggingface.co/{repo_id}"

    def fake_upload_folder(self, *, folder_path, repo_id, allow_patterns=None, **kw):
        # what the Hub would receive: the files the patterns select, read now
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()
                 if allow_patterns is None or p.name in allow_patterns}
        calls["upload"] = (repo_id, files, kw)

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", fake_upload_folder)
    url = push(tmp_path, "someone/quijote-rnn", private=True)

    assert url == "https://huggingface.co/someone/quijote-rnn"
    assert calls["create"][0] == "someone/quijote-rnn" and calls["create"][1]["private"] is True
    repo_id, files, kw = calls["upload"]
    assert repo_id == "someone/quijote-rnn" and kw["repo_type"] == "model"
    assert {"config.json", "model.safetensors", "README.md"} <= set(files) <= set(UPLOAD_FILES)
    assert "checkpoint.pt" not in files
    assert files["model.safetensors"] == (tmp_path / "model.safetensors").read_bytes()


def test_push_without_network_raises(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_weights(model, tmp_path)
    with pytest.raises(Exception):
        push(tmp_path, "someone/quijote-rnn", token="hf_fake")
