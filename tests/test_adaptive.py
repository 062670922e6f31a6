"""charrnn.adaptive: dynamic evaluation scores a chunk before learning from it, on a copy; with counts too."""
import copy
import math
from collections import Counter

import pytest
import torch

from charrnn.adaptive import Adapt, split_reader
from charrnn.mixing import NET_PRIOR, Mix
from charrnn.score import score
from conftest import PHRASE, TINY_TEXT


@pytest.fixture(scope="module")
def ids(tiny_model):
    return torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 2), dtype=torch.long)


def test_adaptive_scores_each_chunk_before_learning_from_it(tiny_model, one_thread):
    ids = torch.tensor(tiny_model.vocab.encode(PHRASE))
    static = score(tiny_model, ids)
    adapt = Adapt(lr=1e-2, decay=0.001, chunk=50)
    adaptive = score(tiny_model, ids, adapt)
    first = slice(0, adapt.chunk)
    # the first chunk: no learning yet
    assert torch.allclose(adaptive.logprobs[first], static.logprobs[first], atol=1e-5)
    assert not torch.allclose(adaptive.logprobs[adapt.chunk:], static.logprobs[adapt.chunk:], atol=1e-3)
    # Having learnt the line, the adapting model reads its last copies far better than the static one.
    last = len(ids) // 4
    assert -adaptive.logprobs[-last:].mean() < -static.logprobs[-last:].mean() - 1.0
    summary = adaptive.summary()
    assert summary["adaptive"] is True and summary["adapt"] == {"method": "adam+decay", "lr": 1e-2,
                                                                "decay": 0.001, "chunk": 50, "learn": "top"}


def test_adaptive_is_deterministic_and_leaves_the_model_alone(tiny_model, ids, one_thread):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    a = score(tiny_model, ids, Adapt(lr=3e-3))
    b = score(tiny_model, ids, Adapt(lr=3e-3))
    assert torch.equal(a.logprobs, b.logprobs)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert not tiny_model.training


def test_decay_one_step_back_to_the_trained_weights(tiny_model, ids, one_thread):
    """decay pulls the weights back: with a huge lr and no decay the score collapses, with decay it holds."""
    free = score(tiny_model, ids, Adapt(lr=0.05, decay=0.0, chunk=20))
    held = score(tiny_model, ids, Adapt(lr=0.05, decay=0.9, chunk=20))
    assert held.nats_per_char < free.nats_per_char


def adapt_by_freezing(model, ids, adapt):
    """Adaptive scoring as Adapt.learn defines it, the slow way: the whole network runs on every
    chunk and only the weights that adapt have gradients (what split_reader must equal)."""
    reader = copy.deepcopy(model).float().eval()
    last = f"_l{reader.rnn.num_layers - 1}"
    for name, p in reader.named_parameters():
        p.requires_grad_(name.startswith("head.") or (adapt.learn == "top" and name.endswith(last)))
    opt = torch.optim.Adam([p for p in reader.parameters() if p.requires_grad], lr=adapt.lr)
    state, out = None, []
    for i in range(0, len(ids) - 1, adapt.chunk):
        x, y = ids[i: i + adapt.chunk][None], ids[i + 1: i + 1 + adapt.chunk]
        logits, state, _ = reader(x[:, : len(y)], state)
        logprobs = torch.log_softmax(logits[0], -1).gather(1, y[:, None])[:, 0]
        out.append(logprobs.detach())
        opt.zero_grad()
        (-logprobs.mean()).backward()
        opt.step()
        state = tuple(s.detach() for s in state)
    return torch.cat(out).double()


@pytest.mark.parametrize("learn", ["top", "head"])
def test_adapting_some_weights_learns_only_those_and_scores_as_freezing_the_rest_would(tiny_model, learn,
                                                                                       one_thread):
    reader = copy.deepcopy(tiny_model)
    frozen, learner = split_reader(reader, learn)
    assert reader.rnn.num_layers > 1  # (a 1-layer model could not tell top from all)
    assert not any(p.requires_grad for p in frozen.parameters())
    want = [reader.head.weight, reader.head.bias]
    if learn == "top":
        want += [getattr(reader.rnn,
                         f"{n}_l{reader.rnn.num_layers - 1}") for n in ("weight_ih", "weight_hh",
                                                                        "bias_ih", "bias_hh")]
    assert sorted(p.numel() for p in learner.parameters()) == sorted(p.numel() for p in want)
    assert all(any(torch.equal(p, q) for q in learner.parameters()) for p in want)
    # over 2,048 chars: the frozen part reads 2 blocks
    ids = torch.tensor(tiny_model.vocab.encode(PHRASE * 4))
    with torch.no_grad():  # the two parts, one after the other, are the whole network
        feats, _ = frozen(ids[None])
        assert torch.allclose(learner(feats)[0], reader(ids[None])[0], atol=1e-5)
    adapt = Adapt(lr=1e-2, chunk=50, learn=learn)
    static, adaptive = score(tiny_model, ids), score(tiny_model, ids, adapt)
    assert torch.allclose(adaptive.logprobs, adapt_by_freezing(tiny_model, ids, adapt), atol=1e-4)
    last_part = len(ids) // 4
    assert -adaptive.logprobs[-last_part:].mean() < -static.logprobs[-last_part:].mean() - 0.2
    assert adaptive.summary()["adapt"]["learn"] == learn


@pytest.mark.parametrize("bad", [dict(lr=0), dict(lr=float("nan")), dict(decay=1.0), dict(decay=-0.1),
                                 dict(chunk=0), dict(chunk=2.5), dict(learn="middle")])
def test_bad_adapt_settings_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        Adapt(**bad)


# ------------------------------------------------------------------------- mixing with a count model


def reference_count_probs(mix: Mix, seen: list[int], context: list[int], target: int,
                          vocab_size: int) -> list[float]:
    """mixing.py's interpolated estimate by hand, with Python dicts: p_n for each mixed order."""
    p, out = 1.0 / vocab_size, []
    padded = [-1] * 16 + seen  # the sequence's start is padded, as in mixing.py
    for n in (0, *mix.orders):
        ctx = tuple(([-1] * 16 + context)[len(context) + 16 - n:]) if n else ()
        follow = Counter(padded[t] for t in range(16, len(padded)) if tuple(padded[t - n: t]) == ctx)
        total, distinct, c = sum(follow.values()), len(follow), follow[target]
        p = (max(c - mix.discount, 0) + (mix.discount * distinct + mix.strength) * p) / (total + mix.strength)
        if n:
            out.append(p)
    return out


def test_mixed_first_chunk_is_the_static_network_mixed_with_the_prior_counts(tiny_model, one_thread):
    """Nothing learnt yet: chunk 1 mixes the static network with counts of the prior text alone, with
    the mixer's starting weights (the network e^NET_PRIOR times each count order)."""
    prior = torch.tensor(tiny_model.vocab.encode(TINY_TEXT))
    ids = torch.tensor(tiny_model.vocab.encode(PHRASE))
    mix = Mix(orders=(1, 3), discount=0.4, strength=0.7, lr=0.5)
    adapt = Adapt(lr=1e-2, chunk=20, mix=mix)
    mixed = score(tiny_model, ids, adapt, prior=prior)
    static = score(tiny_model, ids)
    w = torch.tensor([math.exp(NET_PRIOR), 1.0, 1.0])
    w /= w.sum()
    seen = prior.tolist()
    for j in range(adapt.chunk):
        counts = reference_count_probs(mix, seen, seen + ids[: j + 1].tolist(), ids[j + 1].item(),
                                       len(tiny_model.vocab))
        expected = math.log(w[0] * math.exp(static.logprobs[j].item()) + w[1] * counts[0] + w[2] * counts[1])
        assert mixed.logprobs[j].item() == pytest.approx(expected, abs=1e-5)
    assert mixed.summary()["adapt"] == {"method": "adam+decay+counts", "lr": 1e-2, "decay": 0.0, "chunk": 20,
                                        "learn": "top",
                                        "mix": {"orders": [1, 3], "discount": 0.4, "strength": 0.7, "lr": 0.5,
                                                "prior_chars": len(prior)}}


@pytest.mark.parametrize("k", [0, 3])
def test_mixed_scores_each_chunk_before_anything_learns_from_it(tiny_model, one_thread, k):
    """Changing the text after chunk k never changes chunk k's (or an earlier chunk's) log-probabilities."""
    prior = torch.tensor(tiny_model.vocab.encode(TINY_TEXT))
    ids = torch.tensor(tiny_model.vocab.encode(PHRASE))
    adapt = Adapt(lr=1e-2, chunk=16, mix=Mix(orders=(2, 4), lr=1.0))
    changed = ids.clone()
    first_after = (k + 1) * adapt.chunk + 1  # the first char chunk k+1 predicts
    changed[first_after:] = (ids[first_after:] + 1) % len(tiny_model.vocab)  # every later char another
    a, b = score(tiny_model, ids, adapt, prior=prior), score(tiny_model, changed, adapt, prior=prior)
    assert torch.equal(a.logprobs[: first_after - 1], b.logprobs[: first_after - 1])
    assert not torch.equal(a.logprobs[first_after - 1:], b.logprobs[first_after - 1:])


def test_counts_of_the_prior_text_help_and_mixing_is_deterministic(tiny_model, one_thread):
    ids = torch.tensor(tiny_model.vocab.encode(PHRASE))
    adapt = Adapt(lr=1e-3, chunk=32, mix=Mix())
    alone = score(tiny_model, ids, Adapt(lr=1e-3, chunk=32))
    fresh = score(tiny_model, ids, adapt)  # counts of the text read so far only
    primed = score(tiny_model, ids, adapt, prior=ids)  # the counts have read this very text before
    assert fresh.prior_chars == 0 and primed.prior_chars == len(ids)
    assert fresh.nats_per_char < alone.nats_per_char  # the phrase repeats: counts catch on fast
    assert primed.nats_per_char < fresh.nats_per_char / 2
    assert torch.equal(primed.logprobs, score(tiny_model, ids, adapt, prior=ids).logprobs)


@pytest.mark.parametrize("bad",
                         [dict(orders=()), dict(orders=(0, 2)), dict(orders=(3, 3)), dict(orders=(17,)),
                          dict(discount=1.0), dict(discount=-0.1), dict(strength=0), dict(lr=-1),
                          dict(lr=float("inf"))])
def test_bad_mix_settings_are_refused(bad):
    with pytest.raises(ValueError, match="must be"):
        Mix(**bad)
