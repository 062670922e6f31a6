"""charrnn.score: a Score's totals, the entry point's checks, its ticks, the same on CUDA."""

import pytest
import torch

from charrnn.adaptive import Adapt
from charrnn.score import score
from charrnn.validation import nats_per_char
from conftest import TINY_TEXT


@pytest.fixture(scope="module")
def ids(tiny_model):
    return torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 2), dtype=torch.long)


def test_static_score_is_the_mean_surprise_per_char_in_nats_and_bits(tiny_model, ids, one_thread):
    s = score(tiny_model, ids)
    with torch.no_grad():
        logits, _, _ = tiny_model(ids[:-1][None])  # (1, N-1, V) the whole text in one call
    # (N-1,) p(char i+1 | chars 0..i)
    probs = torch.softmax(logits[0].double(), -1).gather(1, ids[1:, None])[:, 0]
    nats, bits = -probs.log().mean().item(), -probs.log2().mean().item()
    assert s.chars == len(ids)  # the first char, which nothing predicts, is counted as read
    assert (s.nats_per_char, s.bits_per_char) == (pytest.approx(nats, abs=1e-5),
                                                  pytest.approx(bits, abs=1e-5))
    assert s.summary(3) == {"nats_per_char": pytest.approx(nats, abs=1e-5),
                            "bits_per_char": pytest.approx(bits, abs=1e-5),
                            "chars": len(ids), "unknown_chars": 3, "adaptive": False}
    assert nats_per_char(tiny_model, ids) == pytest.approx(nats, abs=1e-5)  # training's exact validation loss
    assert nats_per_char(tiny_model, ids, rows=4) == pytest.approx(nats, abs=0.05)  # its faster estimate


def test_score_refuses_too_short_text(tiny_model):
    with pytest.raises(ValueError, match="at least 2"):
        score(tiny_model, torch.tensor([3]))


@pytest.mark.parametrize("adapt", [None, Adapt()], ids=["static", "adaptive"])
def test_a_tick_follows_the_reading_piece_by_piece(tiny_model, adapt, one_thread):
    # 4,000+ chars: several pieces
    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 8), dtype=torch.long)
    ticks = []
    score(tiny_model, ids, adapt, tick=lambda done, total: ticks.append((done, total)))
    assert len(ticks) > 3 and ticks[-1] == (len(ids) - 1, len(ids) - 1)
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_scores_as_the_cpu_does(tiny_model_dir, ids):
    from charrnn import load_model

    cpu, cuda = load_model(tiny_model_dir, "cpu"), load_model(tiny_model_dir, "cuda")
    for adapt in (None, Adapt(lr=3e-3, decay=0.01)):
        assert score(cuda, ids,
                     adapt).nats_per_char == pytest.approx(score(cpu, ids, adapt).nats_per_char, abs=1e-3)
    assert torch.equal(score(cuda, ids, Adapt()).logprobs, score(cuda, ids, Adapt()).logprobs)
