"""charrnn.generate: stepping, sampling controls, streaming and seed handling, on tiny models."""
import math
import re

import pytest
import torch

from charrnn.generate import (
    MAX_SEED_CHARS,
    Settings,
    check_settings,
    complete,
    make_step,
    next_chars,
    pick,
    prefill,
    prepare_seed,
    stream,
)
from charrnn.model import CharRNN
from conftest import SEED

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_matches_the_module(cell):
    torch.manual_seed(0)
    model = CharRNN("abcdefgh ", cell=cell, embed_dim=8, hidden_size=16, num_layers=3, dropout=0.5).train()
    ids = torch.randint(0, 9, (2, 12))  # (B, T)
    with torch.no_grad():
        model.eval()
        want, _, _ = model(ids)  # (2, 12, V)
        model.train()
        logits, layers = prefill(model, ids[:, :4])
        assert model.training  # prefill() must not leave the model in eval mode
        got, step = [logits], make_step(model)
        for t in range(4, 12):
            logits, layers = step(ids[:, t], layers)
            got.append(logits)
    torch.testing.assert_close(torch.stack(got[:-1], 1), want[:, 3:11], rtol=1e-5, atol=1e-5)


def test_greedy_equals_rereading_the_whole_text(tiny_model):
    out = complete(tiny_model, SEED, Settings(length=40, temperature=0))
    text = out.seed
    with torch.no_grad():
        for _ in range(40):  # the slow way: read everything again for every char
            logits, _, _ = tiny_model(torch.tensor([tiny_model.vocab.encode(text)]))
            text += tiny_model.vocab.chars[logits[0, -1].argmax()]
    assert out.greedy == text[len(out.seed):]


def test_sampling_seed_reproduces_the_text(tiny_model):
    settings = Settings(length=120, temperature=1.0, sampling_seed=7)
    first, again = complete(tiny_model, SEED, settings), complete(tiny_model, SEED, settings)
    assert first.sampled == again.sampled and first.probs == again.probs and first.sampling_seed == 7
    others = {complete(tiny_model, SEED, Settings(length=120, temperature=1.0, sampling_seed=s)).sampled
              for s in (8, 9, 10)}
    assert len(others | {first.sampled}) > 1  # the seed matters
    fresh = complete(tiny_model, SEED, Settings(length=120, temperature=1.0))
    replay = complete(tiny_model, SEED,
                      Settings(length=120, temperature=1.0, sampling_seed=fresh.sampling_seed))
    assert fresh.sampled == replay.sampled  # the reported seed of a random run replays it


@pytest.mark.parametrize("settings", [Settings(length=80, temperature=0),
                                      Settings(length=80, temperature=1e-5, sampling_seed=1),
                                      Settings(length=80, temperature=1.5, top_k=1, sampling_seed=2),
                                      Settings(length=80, temperature=1.5, top_p=1e-6, sampling_seed=3)],
                         ids=["temperature-0", "temperature-tiny", "top-k-1", "top-p-tiny"])
def test_greedy_limits_of_sampling(tiny_model, settings):
    out = complete(tiny_model, SEED, settings)
    assert out.sampled == out.greedy and len(out.greedy) == 80


def test_high_temperature_departs_from_greedy(tiny_model):
    out = complete(tiny_model, SEED, Settings(length=80, temperature=1.5, sampling_seed=0))
    assert out.sampled != out.greedy


def test_probs_are_the_models_probabilities_of_the_sampled_chars(tiny_model):
    out = complete(tiny_model, SEED, Settings(length=30, temperature=1.2, sampling_seed=4))
    assert len(out.probs) == len(out.sampled) == 30
    with torch.no_grad():
        for i in (0, 9, 29):
            logits, _, _ = tiny_model(torch.tensor([tiny_model.vocab.encode(out.seed + out.sampled[:i])]))
            want = logits[0, -1].softmax(-1)[tiny_model.vocab.stoi[out.sampled[i]]].item()
            assert out.probs[i] == pytest.approx(want, rel=1e-4)


def test_candidates_follow_the_sampled_text(tiny_model):
    out = complete(tiny_model, SEED, Settings(length=25, temperature=1.0, sampling_seed=5))
    assert len(out.candidates) == 10
    probs = [p for _, p in out.candidates]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    want = next_chars(tiny_model, out.seed + out.sampled, k=10)
    assert [c for c, _ in out.candidates] == [c for c, _ in want]
    assert probs == pytest.approx([p for _, p in want], rel=1e-4)


def test_stream_yields_growing_prefixes_ending_in_the_full_text(tiny_model):
    settings = Settings(length=60, temperature=0.9, sampling_seed=11)
    outs = list(stream(tiny_model, SEED, settings, every=7))
    assert len(outs) == 60 // 7 + 1
    for before, after in zip(outs, outs[1:]):
        assert after.greedy.startswith(before.greedy) and len(after.greedy) > len(before.greedy)
        assert after.sampled.startswith(before.sampled) and len(after.sampled) > len(before.sampled)
        assert after.probs[:len(before.probs)] == before.probs
    assert [o.finished for o in outs] == [False] * (len(outs) - 1) + [True]
    final = complete(tiny_model, SEED, settings)
    assert (outs[-1].greedy, outs[-1].sampled) == (final.greedy, final.sampled)
    assert len(outs[0].sampled) == 7


def test_stream_interval_throttles_updates(tiny_model):
    outs = list(stream(tiny_model, SEED, Settings(length=50, sampling_seed=1), every=1, interval=60.0))
    assert len(outs) == 2  # the first char at once, then nothing until the end
    assert len(outs[0].sampled) == 1 and len(outs[1].sampled) == 50


@pytest.mark.parametrize("stop_at, ends", [("sentence", ".!?"), ("paragraph", "\n")])
def test_stop_at_ends_each_text_at_its_first_stop(tiny_model, stop_at, ends):
    for sampling_seed in range(3):
        out = complete(tiny_model, SEED, Settings(length=400, temperature=1.0, sampling_seed=sampling_seed,
                                                  stop_at=stop_at))
        for text in (out.greedy, out.sampled):
            assert 1 <= len(text) <= 400
            assert not any(c in ends for c in text[:-1])
            assert text[-1] in ends or len(text) == 400
        assert len(out.probs) == len(out.sampled)


@pytest.mark.parametrize("length", [1, 2, 300])
def test_length_is_respected(tiny_model, length):
    out = complete(tiny_model, SEED, Settings(length=length, temperature=0.8, sampling_seed=0))
    assert len(out.greedy) == len(out.sampled) == len(out.probs) == length


def test_unknown_chars_are_reported_mapped_or_dropped(tiny_model):
    vocab = tiny_model.vocab
    assert "Ñ" not in vocab.stoi and "ñ" in vocab.stoi and "k" not in vocab.stoi and "—" not in vocab.stoi
    seed, notices = prepare_seed(tiny_model, "Ñandú kiwi — 🙂")
    assert set(seed) <= set(vocab.chars)
    assert seed.startswith("ñandú")
    text = " ".join(notices)
    assert "'Ñ' → 'ñ'" in text and "'—' → '–'" in text  # mapped to close chars...
    assert "Dropped" in text and "'k'" in text and "'🙂'" in text  # ...or dropped, never silently


def test_accent_free_model_maps_accents_with_a_notice():
    model = CharRNN("abcdefghijklmnopqrstuvwxyz ,.", strip_accents=True, hidden_size=8, num_layers=1)
    seed, notices = prepare_seed(model, "canción de sí")
    assert seed == "cancion de si"
    assert any("'ó' → 'o'" in n and "'í' → 'i'" in n for n in notices)


def test_seed_is_nfc_normalized(tiny_model):
    seed, notices = prepare_seed(tiny_model, "la Mancha\u0301")  # 'á' written as 'a' + combining acute
    assert seed == "la Manchá" and notices == []


@pytest.mark.parametrize("seed_text", ["", None])
def test_empty_seed_starts_from_a_new_line(tiny_model, seed_text):
    out = complete(tiny_model, seed_text, Settings(length=20, sampling_seed=0))
    assert out.seed == "\n" and len(out.sampled) == 20
    assert any("empty" in n for n in out.notices)


def test_long_seed_is_trimmed_to_its_tail(tiny_model):
    text = "de la Mancha " * 10_000 + "fin"  # 130k chars
    out = complete(tiny_model, text, Settings(length=10, sampling_seed=0))
    assert out.seed == text[-MAX_SEED_CHARS:]
    assert any(f"{len(text):,}" in n and f"{MAX_SEED_CHARS:,}" in n for n in out.notices)


@pytest.mark.parametrize("bad, reason", [
    (dict(length=0), "Length"), (dict(length=10_001), "Length"), (dict(length=2.5), "Length"),
    (dict(temperature=-0.1), "Temperature"), (dict(temperature=math.nan), "Temperature"),
    (dict(temperature="hot"), "Temperature"), (dict(top_k=-1), "Top-k"), (dict(top_p=0), "Top-p"),
    (dict(top_p=1.5), "Top-p"), (dict(sampling_seed=-1), "The sampling seed"),
    (dict(sampling_seed=1.5), "The sampling seed"), (dict(stop_at="chapter"), "'Stop at'")])
def test_bad_settings_are_refused_with_a_reason(tiny_model, bad, reason):
    with pytest.raises(ValueError, match=f"^{re.escape(reason)} must be"):
        Settings(**bad).validated()
    with pytest.raises(ValueError, match=f"^{re.escape(reason)} must be"):
        next(stream(tiny_model, SEED, Settings(**bad)))


def kept(logits, temperature=1.0, top_k=0, top_p=1.0) -> list[int]:
    """The chars pick() can draw for a one-row distribution, over draws spread across [0, 1)."""
    n = 400
    rows = logits.expand(n, -1)
    ids = pick(rows, torch.full((n,), temperature), torch.full((n,), top_k), torch.full((n,), top_p),
               torch.linspace(0, 1 - 1e-9, n, dtype=torch.float64).float())
    return sorted(set(ids.tolist()))


def test_pick_keeps_the_top_k_and_the_nucleus():
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))  # (1, V)
    assert kept(logits) == [0, 1, 2, 3]
    assert kept(logits, top_k=2) == [1, 3]
    assert kept(logits, top_p=0.5) == [1]
    assert kept(logits, top_p=0.7) == [1, 3]
    assert kept(logits, top_p=0.81) == [1, 2, 3]
    assert kept(logits, top_p=0.6) == [1, 3]
    assert kept(logits, top_k=2, top_p=0.6) == [1]  # top-p on what top-k kept: 0.625 of it is char 1
    assert kept(logits, temperature=0) == [1]


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 5e-324])
def test_tiny_temperatures_are_greedy_not_an_error(tiny_model, temperature):
    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]]))
    assert kept(logits, temperature=temperature) == [1]
    out = complete(tiny_model, SEED, Settings(length=40, temperature=temperature, sampling_seed=0))
    assert out.sampled == out.greedy


def test_pick_gives_each_row_the_same_char_alone_or_among_others():
    torch.manual_seed(0)
    logits = torch.randn(6, 30)
    temperature, top_k = torch.tensor([0.0, 0.7, 1.0, 1.5, 0.3, 2.0]), torch.tensor([0, 0, 5, 0, 2, 0])
    top_p, draw = torch.tensor([1.0, 0.9, 1.0, 0.5, 1.0, 1.0]), torch.rand(6)
    together = pick(logits, temperature, top_k, top_p, draw)
    alone = [pick(logits[i:i + 1], temperature[i:i + 1], top_k[i:i + 1], top_p[i:i + 1], draw[i:i + 1]).item()
             for i in range(6)]
    assert together.tolist() == alone


@pytest.mark.parametrize("value", [[], {}, [1], "x" * 500])
def test_stop_at_of_a_wrong_type_gets_the_sentence(value):
    with pytest.raises(ValueError, match="^'Stop at' must be one of: sentence, paragraph"):
        check_settings(300, 0.8, 0, 1.0, None, value)


@pytest.mark.parametrize("field", ["length", "temperature", "top_k", "top_p", "sampling_seed"])
def test_huge_integers_get_the_sentence_not_an_overflow(field):
    raw = dict(length=300, temperature=0.8, top_k=0, top_p=1.0, sampling_seed=None)
    for huge in (10**400, -(10**400), "1" + "0" * 400):
        with pytest.raises(ValueError, match=" must be a( whole)? number from .*, not "):
            check_settings(**{**raw, field: huge})


def test_compatibility_forms_map_before_case_variants(tiny_model):
    seed, notices = prepare_seed(tiny_model, "\ufb01n de la Ｍancha")  # 'ﬁ' ligature, full-width 'Ｍ'
    assert seed == "fin de la Mancha"
    assert any("'ﬁ' → 'fi'" in n for n in notices)


def test_unknown_chars_are_dropped_before_the_seed_is_trimmed(tiny_model):
    seed, notices = prepare_seed(tiny_model, "de la Mancha" + "🙂" * 100_000)
    assert seed == "de la Mancha"
    assert any("Dropped 100000" in n for n in notices) and not any("empty" in n for n in notices)
    seed, notices = prepare_seed(tiny_model, "🙂" * 3000 + "a" * 2100, max_chars=2000)
    assert seed == "a" * 2000 and any("2,100 characters long" in n for n in notices)


def test_case_variants_are_said_apart_from_other_replacements(tiny_model):
    seed, notices = prepare_seed(tiny_model, "Ñandú — dijo")
    assert seed.startswith("ñandú –")
    assert any(n.startswith("The model's vocabulary lacks these letters in this case") and "'Ñ' → 'ñ'" in n
               and "'—'" not in n for n in notices)
    assert any(n.startswith("Replaced characters") and "'—' → '–'" in n and "'Ñ'" not in n for n in notices)
