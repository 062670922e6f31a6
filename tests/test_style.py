"""charrnn.style: read a passage adapting (on a copy), then write in its style."""
import pytest
import torch

from charrnn.adaptive import Adapt
from charrnn.generate import Settings, SettingsError, complete
from charrnn.score import score
from charrnn.style import read_passage, write_like
from conftest import PASSAGE

CONTINUATION = "Querida Lucía: hoy llovió en Madrid y pensé en ti. " * 3
FAST = Adapt(lr=5e-3)  # the tiny model reads the passage in a few chunks: learn faster than the default


def ids(model, text):
    """The text's ids as read_passage reads them: unknown chars mapped to close ones, or dropped."""
    return torch.tensor(model.vocab.encode(model.vocab.map_unknown(text)[0], errors="drop"))


def test_adapting_on_a_text_lowers_its_loss_on_a_continuation_of_it(tiny_model, one_thread):
    adapted, how = read_passage(tiny_model, PASSAGE, FAST)
    continuation = ids(tiny_model, CONTINUATION)
    after, before = score(adapted, continuation), score(tiny_model, continuation)
    assert after.nats_per_char < before.nats_per_char - 0.3
    assert how.end < how.end_unadapted and how.gain == pytest.approx(how.end_unadapted - how.end)
    assert how.end < how.start and how.passage < how.passage_unadapted
    assert how.chars == len(ids(tiny_model, PASSAGE)) and how.window == (how.chars - 1) // 4


@pytest.mark.parametrize("learn", ["top", "all", "head"])
def test_the_adapted_copy_is_the_reader_as_it_ended_and_the_model_is_untouched(tiny_model, learn, one_thread):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    adapted, _ = read_passage(tiny_model, PASSAGE, Adapt(learn=learn))
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the served model is untouched
    changed = {k for k, v in adapted.state_dict().items() if not torch.equal(v, before[k])}
    expected = {"top": {"head.weight", "head.bias", "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1",
                        "rnn.bias_hh_l1"},
                "head": {"head.weight", "head.bias"}, "all": set(before)}[learn]
    assert changed == expected  # the top layer's adapted copy is written back into the model


def test_write_like_streams_the_same_text_for_the_same_seeds_and_writes_otherwise_than_the_model(
        tiny_model, one_thread):
    settings = Settings(length=60, temperature=0.7, sampling_seed=3)
    runs = [list(write_like(tiny_model, PASSAGE, "Querida", settings, FAST)) for _ in range(2)]
    (how, last), (how2, last2) = runs[0][-1], runs[1][-1]
    assert len(runs[0]) > 2 and last.finished and len(last.greedy) == len(last.sampled) == 60
    assert (last.greedy, last.sampled, how) == (last2.greedy, last2.sampled, how2)
    plain = complete(tiny_model, "Querida", settings)
    assert last.greedy != plain.greedy  # the adapted copy writes otherwise


def test_bad_settings_and_passages_are_refused_before_anything_is_read(tiny_model):
    with pytest.raises(SettingsError, match="Temperature"):
        next(write_like(tiny_model, PASSAGE, "x", Settings(temperature=-1)))
    with pytest.raises(ValueError, match="at least 2 characters"):
        next(write_like(tiny_model, "☃", "x"))
