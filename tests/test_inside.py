"""charrnn.inside: unit activations over a text and the features they are ranked against."""
import pytest
import torch

from charrnn import inside
from conftest import TINY_TEXT, train_tiny


def test_features_on_a_dialogue():
    text = "Dijo así:\n–¿Quién es? –preguntó Sancho–. No sé.\nFin"
    f = inside.features(text)

    def at(name, sub, k=0):  # the feature's value k chars after where `sub` starts
        return f[name][text.index(sub) + k].item()

    assert at("dialogue", "Dijo") == 0 and at("dialogue", "Quién") == 1
    assert at("dialogue", "preguntó") == 0 and at("dialogue", "No sé") == 1 and at("dialogue", "Fin") == 0
    assert at("question", "¿") == 1 and at("question", "es?", 1) == 1 and at("question", " –pre") == 0
    assert [at("word_position", "Quién", k) for k in range(6)] == [1, 2, 3, 4, 5, 0]
    assert at("line_position", "Dijo") == 0 and at("line_position",
                                                   "–¿") == 0 and at("line_position", "¿") == 1
    assert at("after_sentence_end", ". No", 0) == 1 and at("after_sentence_end", ". No", 1) == 1
    assert at("after_sentence_end", ". No", 2) == 0
    assert at("capitalised", "Sancho", 3) == 1 and at("capitalised", "preguntó", 3) == 0
    assert all(len(v) == len(text) for v in f.values())
    assert "quoted" not in f and "digit" not in f  # features this text never shows are left out


def test_features_any_text_has_and_no_dialogue_without_dash_turns():
    text = 'Release 2.3 (beta) fixes "the" crash - again. It adds [4 themes]!\nVersion 2'
    f = inside.features(text)

    def at(name, sub, k=0):
        return f[name][text.index(sub) + k].item()

    assert at("quoted", "the") == 1 and at("quoted", "crash") == 0
    assert at("bracketed", "beta") == 1 and at("bracketed", "themes") == 1 and at("bracketed", "fixes") == 0
    assert at("digit", "2.3") == 1 and at("digit", ".3") == 0
    assert at("after_sentence_end", "It", -1) == 1 and at("after_sentence_end", "!\n") == 1
    assert "dialogue" not in f and "question" not in f  # a hyphen inside a line is no dialogue turn
    unspaced = inside.features("我们去公园。他说：“明天？”")
    assert set(unspaced) == {"word_position", "line_position", "after_sentence_end", "quoted"}


def test_unit_numbers_cover_c_then_h_of_every_layer(tiny_model):
    H, L = tiny_model.rnn.hidden_size, tiny_model.rnn.num_layers
    assert inside.num_units(tiny_model) == 2 * L * H
    assert inside.unit_name(tiny_model, 0) == "layer 1 c 0"
    assert inside.unit_name(tiny_model, H + 3) == "layer 2 c 3"
    assert inside.unit_name(tiny_model, L * H) == "layer 1 h 0"
    assert inside.unit_name(tiny_model, 2 * L * H - 1) == f"layer {L} h {H - 1}"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_activations_agree_with_the_network_states(cell, one_thread):
    model = tiny_model = train_tiny(cell=cell, steps=5)
    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT[:200]))
    acts = inside.activations(model, ids)
    assert acts.shape == (len(ids), inside.num_units(model))
    with torch.no_grad():
        out, state = model.rnn(model.embed(ids[None]))
    H, L = model.rnn.hidden_size, model.rnn.num_layers
    h_n, c_n = state if cell == "lstm" else (state, None)
    h_block = L * H if cell == "lstm" else 0
    assert torch.allclose(acts[:, -H:], out[0], atol=1e-5)  # the top layer's h at every step
    for k in range(L):
        assert torch.allclose(acts[-1, h_block + k * H: h_block + (k + 1) * H], h_n[k, 0], atol=1e-5)
        if c_n is not None:  # the memories c rebuilt from the gates end where the LSTM's own do
            assert torch.allclose(acts[-1, k * H: (k + 1) * H], c_n[k, 0], atol=1e-4)


def test_correlations_find_the_unit_that_tracks_a_feature():
    g = torch.Generator().manual_seed(0)
    feature = torch.rand(500, generator=g)
    acts = torch.randn(500, 6, generator=g)
    acts[:, 2] = 3 * feature + 1
    acts[:, 4] = -feature
    acts[:, 5] = 7.0  # constant: no correlation, not NaN
    r = inside.correlations(acts, feature[:, None])[0]
    assert r[2].item() == pytest.approx(1.0, abs=1e-5) and r[4].item() == pytest.approx(-1.0, abs=1e-5)
    assert r[5].item() == 0 and r[[0, 1, 3]].abs().max() < 0.2


def test_ranking_lists_the_best_correlated_units_per_feature(tiny_model, one_thread):
    text = TINY_TEXT * 3
    rows = inside.rank_units(tiny_model, text, top=3)
    acts = inside.activations(tiny_model, torch.tensor(tiny_model.vocab.encode(text))).double()  # (T, U)
    for name, feature in inside.features(text).items():
        # Pearson's r of each unit with the feature, by torch.corrcoef rather than inside.correlations
        r = torch.corrcoef(torch.cat([feature.double()[None], acts.T]))[0, 1:]  # (U,)
        want = r.abs().argsort(descending=True)[:3].tolist()
        mine = [row for row in rows if row["feature"] == inside.FEATURES[name]]
        assert [row["unit"] for row in mine] == want, name
        assert [row["correlation"] for row in mine] == pytest.approx(r[want].tolist(), abs=1e-3)
        assert all(row["name"] == inside.unit_name(tiny_model, row["unit"]) for row in mine)
    assert len(rows) == 3 * len(inside.features(text))
    passages = (TINY_TEXT[:300], TINY_TEXT[300:])
    ranked = inside.passage_ranking(tiny_model, passages)  # on the corpus's own passages, once per model
    assert inside.passage_ranking(tiny_model, passages) is ranked
    seen = inside.look(tiny_model, "anything", 3, passages=passages)
    assert (seen.ranking, seen.ranked_on) == (ranked, "passages of the model's own corpus")


def test_look_is_the_trace_and_the_ranking_from_one_pass_with_progress(tiny_model, one_thread):
    text = "En un lugar € de la Mancha, dijo Sancho: ¿qué gigantes?\n" * 40  # 2,320 chars
    ticks = []
    seen = inside.look(tiny_model, text, 7, tick=lambda done, total: ticks.append((done, total)))
    assert (seen.text, seen.values) == inside.unit_trace(tiny_model, text, 7)
    assert seen.ranking == inside.rank_units(tiny_model, text)
    known = sum(c in tiny_model.vocab.stoi for c in text)
    total = known * tiny_model.rnn.num_layers
    assert ticks[-1] == (total, total) and len(ticks) > 4  # pieces, not one tick at the end
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_a_tick_that_raises_stops_the_look(tiny_model, one_thread):
    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        inside.look(tiny_model, "En un lugar de la Mancha " * 100, 3, tick=stop)
    with pytest.raises(ValueError, match="no character the model knows"):
        inside.rank_units(tiny_model, "€€€")  # never a raw torch error about index dtypes


def test_unit_trace_scales_one_unit_to_the_text_and_skips_unknown_chars(tiny_model, one_thread):
    text = "En un lugar € de la Mancha"  # '€' is not in the tiny model's vocabulary
    shown, values = inside.unit_trace(tiny_model, text, 7)
    assert shown == tiny_model.vocab.normalize(text) and len(values) == len(shown)
    assert [v is None for v in values] == [c not in tiny_model.vocab.stoi for c in shown]
    acts = inside.activations(tiny_model, torch.tensor(tiny_model.vocab.encode(shown, errors="drop")))[:, 7]
    known = torch.tensor([v for v in values if v is not None])
    assert torch.allclose(known, acts / acts.abs().max(),
                          atol=1e-6) and known.abs().max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no character the model knows"):
        inside.unit_trace(tiny_model, "€€€", 7)
