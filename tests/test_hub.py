import functools
import json
import os
import stat
from pathlib import Path

import pytest
import torch

from charrnn import CharRNN, hub, weights
from charrnn.hub import PushError, push, save_weights
from charrnn.pretrained import load_model
from charrnn.text import Vocab
from charrnn.weights import WeightsError
from conftest import profile_of

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
    with pytest.raises(WeightsError, match="model.safetensors is not a readable safetensors file"):
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
    with pytest.raises(WeightsError, match="config.json has hidden_size 32, the weights 16"):
        load_model(tmp_path / "s")


def test_push_uploads_weights_and_card_to_the_repo(model, tmp_path, hub_calls):
    save_weights(model, tmp_path)
    profile = profile_of(model, "notes.txt", nats=1.5, chars=1000,
                         val_text="Dulcinea del Toboso. ¿Qué tal, señor?")
    profile.save(tmp_path)  # corpus.json: what the card, the page and a Space say of the text
    card = model.generate_model_card(repo_id=str(tmp_path), corpus=profile)
    (tmp_path / "README.md").write_text(str(card), encoding="utf-8")
    (tmp_path / "checkpoint.pt").write_bytes(b"not for upload")
    url = push(tmp_path, "someone/quijote-rnn", private=True)

    assert url == "https://huggingface.co/someone/quijote-rnn"
    assert [c[0] for c in hub_calls] == ["create_repo", "create_commit"]
    assert hub_calls[0][1:] == ("someone/quijote-rnn",
                                {"private": True, "exist_ok": True, "repo_type": "model"})
    repo_id, kw = hub_calls[1][1:]
    assert repo_id == "someone/quijote-rnn" and kw["repo_type"] == "model"
    files = kw["files"]
    assert set(files) == {"config.json", "model.safetensors", "README.md", "corpus.json"}  # no checkpoint
    assert files["corpus.json"] == (tmp_path / "corpus.json").read_bytes() and profile.seeds
    assert files["model.safetensors"] == (tmp_path / "model.safetensors").read_bytes()
    uploaded = files["README.md"].decode("utf-8")  # the card's code loads from where it was pushed
    assert 'CharRNN.from_pretrained("someone/quijote-rnn")' in uploaded and str(tmp_path) not in uploaded
    assert uploaded.replace("someone/quijote-rnn", str(tmp_path)) == str(card)  # nothing else changed


def test_push_offline_says_so_and_sends_nothing(model, tmp_path, monkeypatch, hub_calls):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_weights(model, tmp_path)
    with pytest.raises(PushError, match="^HF_HUB_OFFLINE is set: unset it to upload to the Hub$"):
        push(tmp_path, "someone/quijote-rnn", token="hf_fake")
    assert hub_calls == []


def test_check_can_push_names_what_is_missing(monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: False)
    with pytest.raises(PushError, match="^the Hub cannot be reached"):
        hub.check_can_push(token="hf_fake")
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=hub.PROBE_TIMEOUT_S: True)

    def rejected(self):
        raise ValueError("Invalid user token.\nmore detail")

    monkeypatch.setattr(HfApi, "whoami", rejected)
    with pytest.raises(PushError,
                       match=r"does not accept the token \(Invalid user token.\): run `hf auth login`"):
        hub.check_can_push(token="hf_fake")
    monkeypatch.setattr(HfApi, "whoami", lambda self: {"name": "someone"})
    hub.check_can_push(token="hf_good")  # no error


# ---------------------------------------------------------------- weights that must not load

def _saved(model, folder: Path) -> Path:
    save_weights(model, folder)
    return folder


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**cfg, **changes}), encoding="utf-8")


def _rewrite_tensors(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    change(state)
    save_file(state, str(folder / "model.safetensors"))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(model, tmp_path, value):
    folder = _saved(model, tmp_path)
    _rewrite_tensors(folder, lambda s: s["rnn.weight_hh_l1"].view(-1).__setitem__(3, value))
    with pytest.raises(WeightsError, match=r"tensor rnn\.weight_hh_l1 has 1 NaN or infinite value"):
        load_model(folder)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_weights_are_refused(model, tmp_path, dtype):
    folder = _saved(model, tmp_path)
    _rewrite_tensors(folder, lambda s: s.__setitem__("head.weight", s["head.weight"].to(dtype)))
    with pytest.raises(WeightsError, match=r"tensor head\.weight is (I64|I32|U8|BOOL), not floating point"):
        load_model(folder)


def test_half_precision_weights_still_load(model, tmp_path):
    folder = _saved(model, tmp_path)
    _rewrite_tensors(folder, lambda s: s.update({k: v.half() for k, v in s.items()}))
    assert load_model(folder).head.weight.dtype == torch.float32  # loaded into the fp32 model


@pytest.mark.parametrize("field, value, says", [
    ("hidden_size", 32, r"config.json has hidden_size 32, the weights 16 \(tensor rnn\.weight_ih_l0 is "
                        r"\[\d+, 8\] in the weights, config.json implies \[\d+, 8\]\)"),
    ("embed_dim", 4,
     r"config.json has embed_dim 4, the weights 8 \(tensor embed\.weight is \[\d+, 8\] in the "
     r"weights, config.json implies \[\d+, 4\]\)"),
    ("num_layers", 3, r"config.json has num_layers 3, the weights 2 \(the weights lack tensor "
                      r"rnn\.weight_ih_l2"),
    ("vocab", VOCAB + "xyz", r"config.json has vocab \d+ characters, the weights \d+ characters \(tensor "
                             r"embed"),
])
def test_mismatch_names_the_field_tensor_and_shapes(model, tmp_path, field, value, says):
    folder = _saved(model, tmp_path)
    _edit_config(folder, **{field: value})
    with pytest.raises(WeightsError, match=f"model.safetensors does not match config.json: {says}"):
        load_model(folder)


def test_mismatched_cell_is_named(tmp_path):
    torch.manual_seed(0)
    folder = _saved(CharRNN(VOCAB, cell="gru", embed_dim=8, hidden_size=16), tmp_path)
    _edit_config(folder, cell="lstm")
    with pytest.raises(WeightsError, match=r"config.json has cell 'lstm', the weights 'gru' \(tensor "
                                           r"rnn.weight_ih_l0 is \[48, 8\] in the weights, config.json "
                                           r"implies \[64, 8\]"):
        load_model(folder)


def test_a_huge_config_fails_before_allocating(model, tmp_path, monkeypatch):
    """hidden_size 6000 in a 2-layer LSTM is ~1.9 GB of fp32: the header check must refuse it
    before any real tensor is made (the model is only ever built on the meta device first)."""
    folder = _saved(model, tmp_path)
    _edit_config(folder, hidden_size=6000)
    built = []
    real_init = CharRNN.__init__

    @functools.wraps(real_init)  # the same signature: load_model reads the settings from it
    def watch(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the device in force while the model is built
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(CharRNN, "__init__", watch)
    with pytest.raises(WeightsError, match="config.json has hidden_size 6000, the weights 16"):
        load_model(folder)
    assert built == ["meta"]


def test_unknown_config_settings_are_named(model, tmp_path):
    folder = _saved(model, tmp_path)
    _edit_config(folder, hiden_size=16, colour="red")
    with pytest.raises(WeightsError,
                       match="config.json has settings CharRNN does not take: colour, hiden_size$"):
        load_model(folder)


def test_weights_are_written_readable_by_others(model, tmp_path):
    old = os.umask(0o022)
    try:
        save_weights(model, tmp_path)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}


# ---------------------------------------------------------------- Hub repo ids without a network

def _cache_with(folder: Path, cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub reads offline: models--OWNER--NAME/snapshots/<hash>/ + refs/main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in folder.iterdir():
        (repo / "snapshots" / commit / f.name).write_bytes(f.read_bytes())


def test_offline_repo_id_not_in_cache_fails_at_once_saying_why(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=0: pytest.fail("probed although offline"))
    with pytest.raises(WeightsError, match="^HF_HUB_OFFLINE is set and someone/quijote is not in the local "
                                           "Hugging Face cache: connect and try again, or pass a weights "
                                           "folder$"):
        load_model("someone/quijote", cache_dir=str(tmp_path))


def test_unreachable_hub_uses_the_cache_and_says_so_once(model, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=0: False)
    calls = []
    real = huggingface_hub.hf_hub_download

    def recorded(*args, **kwargs):
        calls.append(kwargs["local_files_only"])
        return real(*args, **kwargs)

    monkeypatch.setattr(weights, "hf_hub_download", recorded)
    _cache_with(_saved(model, tmp_path / "w"), tmp_path / "cache", "someone/quijote")
    said = []
    loaded = load_model("someone/quijote", cache_dir=str(tmp_path / "cache"), log=said.append)
    assert torch.equal(loaded.head.weight, model.head.weight)
    assert said == ["the Hub cannot be reached (no answer from it within 3 s): using the cached copy of "
                    "someone/quijote"]
    assert calls and all(calls)  # every file from the cache: no request that would retry for 25 s
    with pytest.raises(WeightsError,
                       match="^the Hub cannot be reached .* and someone/other is not in the local"):
        load_model("someone/other", cache_dir=str(tmp_path / "cache"))


def test_hub_reachable_is_false_without_a_network(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    assert weights.hub_reachable(timeout=1) is False


def test_from_pretrained_makes_the_same_checks(model, tmp_path):
    folder = _saved(model, tmp_path / "nan")
    _rewrite_tensors(folder, lambda s: s["embed.weight"].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(WeightsError, match=r"model.safetensors: tensor embed\.weight has 1 NaN or infinite"):
        CharRNN.from_pretrained(folder)
    folder = _saved(model, tmp_path / "shape")
    _edit_config(folder, hidden_size=32)  # the mixin alone says only "Error(s) in loading state_dict"
    with pytest.raises(WeightsError, match="config.json has hidden_size 32, the weights 16"):
        CharRNN.from_pretrained(folder)
    loaded = CharRNN.from_pretrained(_saved(model, tmp_path / "good"))
    assert torch.equal(loaded.head.weight, model.head.weight) and not loaded.training


# ---------------------------------------------------------------- one loading path, one line each

def _nested(folder: Path) -> None:
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")


BAD_WEIGHTS = {
    # relative, as `CharRNN.from_pretrained("weights")` in a fresh folder
    "no folder": lambda tmp, model: "weights",
    "a folder without weights": lambda tmp, model: (tmp / "weights").mkdir() or "weights",
    "a repo id, offline, not cached": lambda tmp, model: "someone/absent",
    "non-finite weights": lambda tmp, model: _rewrite_tensors(_saved(model, tmp / "w"), lambda s: s[
        "head.weight"].view(-1).__setitem__(0, float("nan"))) or tmp / "w",
    "hidden_size 1e9": lambda tmp,
    model: _edit_config(_saved(model, tmp / "w"), hidden_size=1e9) or tmp / "w",
    "hidden_size 10**9": lambda tmp,
    model: _edit_config(_saved(model, tmp / "w"), hidden_size=10 ** 9) or tmp / "w",
    "deeply nested config.json": lambda tmp, model: _nested(_saved(model, tmp / "w")) or tmp / "w",
}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_from_pretrained_and_load_model_say_the_same_one_line(model, tmp_path, monkeypatch, case):
    """CharRNN.from_pretrained and charrnn.load_model are one path: the same WeightsError line, at once,
    and never a request to the Hub that would retry for half a minute."""
    from charrnn import CharRNN as Public
    from charrnn import load_model as public_load

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(weights, "hub_reachable",
                        lambda timeout=0: pytest.fail("asked the Hub although offline"))
    where = BAD_WEIGHTS[case](tmp_path, model)
    said = []
    for load in (Public.from_pretrained, CharRNN.from_pretrained, public_load):
        with pytest.raises(WeightsError) as error:
            load(where)
        said.append(str(error.value))
    assert len(set(said)) == 1 and "\n" not in said[0], said


def test_the_app_starts_with_a_message_on_absurd_sizes(model, tmp_path):
    from charrnn.app import server

    _edit_config(_saved(model, tmp_path / "w"), hidden_size=1e9)
    loaded, message = server.load(str(tmp_path / "w"), "cpu")
    assert loaded is None and "hidden_size must be a whole number from 1 to 8192, not 1000000000.0" in message
