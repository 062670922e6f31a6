"""charrnn.evaluate: static and adaptive scoring through the Python API and the CLI."""
import copy
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import torch

from charrnn import evaluate
from charrnn.evaluate import Adapt, nats_per_char, score
from charrnn.mixing import NET_PRIOR, Mix
from charrnn.model import CharRNN
from conftest import ROOT, TINY_TEXT

PHRASE = "Sancho dijo, ¿qué gigantes? " * 20  # a line the tiny model never saw, repeated: one to learn


@pytest.fixture(scope="module")
def ids(tiny_model):
    return torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 2), dtype=torch.long)


def weights_hash(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


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
    assert nats_per_char(tiny_model, ids, streams=4) == pytest.approx(nats, abs=0.05)  # its faster estimate


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_static_score_read_in_pipelined_blocks_equals_one_forward_pass(tiny_model, cell, one_thread):
    model = tiny_model
    if cell == "gru":  # the short recipe's cell: an untrained 2-layer GRU on the same vocabulary
        torch.manual_seed(0)
        model = CharRNN(tiny_model.vocab.chars, cell="gru", embed_dim=8, hidden_size=16, num_layers=2).eval()
    ids = torch.tensor(model.vocab.encode(TINY_TEXT * 2))  # 3 blocks of 512 chars, the last one short
    with torch.no_grad():
        logits, _, _ = model.eval()(ids[:-1][None])  # (1, N-1, V) the whole text in one call
    want = torch.log_softmax(logits[0], -1).gather(1, ids[1:, None])[:, 0]
    assert torch.allclose(score(model, ids).logprobs.float(), want, atol=1e-5)


def layer_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("charrnn-layer-") and t.is_alive()]


def score_failing(model, text: str) -> Exception:
    """What score() raised on text; in a thread, so that a read that hangs fails the test instead."""
    raised = []

    def read():
        try:
            score(model, torch.tensor(model.vocab.encode(text)))
        except Exception as e:  # returned to the test
            raised.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the read hung"
    assert raised, "the read did not fail"
    return raised[0]


@pytest.mark.parametrize("layer", [0, 1])  # 1: the layer below must be drained to finish
def test_a_failing_layer_raises_instead_of_hanging(tiny_model, monkeypatch, layer):
    class Broken(torch.nn.Module):
        def forward(self, x, state=None):
            raise RuntimeError("broken layer")

    rnn_layers = type(tiny_model).rnn_layers
    monkeypatch.setattr(type(tiny_model), "rnn_layers", lambda self, lo,
                        hi: Broken() if lo == layer else rnn_layers(self, lo, hi))
    error = score_failing(tiny_model, TINY_TEXT * 8)  # 10 blocks: more than a queue holds
    assert "broken layer" in str(error) and not layer_threads()  # no layer's thread is left blocked


def test_the_static_read_returns_only_after_its_layer_threads_have_ended(tiny_model, monkeypatch, one_thread):
    """A layer's thread still inside torch when the interpreter exits aborts the process (seen as
    `python -m charrnn.evaluate` exiting with SIGABRT after printing its result)."""
    stage = evaluate._layer_stage

    def slow_to_end(*args):
        stage(*args)
        time.sleep(0.3)  # the thread outlives its last block

    monkeypatch.setattr(evaluate, "_layer_stage", slow_to_end)
    score(tiny_model, torch.tensor(tiny_model.vocab.encode(TINY_TEXT)))
    assert not layer_threads()


def test_a_failing_head_raises_and_every_layer_thread_ends(tiny_model, monkeypatch, one_thread):
    calls = []

    def head(h):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("broken head")
        return torch.nn.Linear.forward(tiny_model.head, h)

    monkeypatch.setattr(tiny_model.head, "forward", head)
    error = score_failing(tiny_model, TINY_TEXT * 8)  # 10 blocks: more than a queue holds
    assert "broken head" in str(error) and not layer_threads()

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
    frozen, learner = evaluate.split_reader(reader, learn)
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


def test_score_refuses_too_short_text(tiny_model):
    with pytest.raises(ValueError, match="at least 2"):
        score(tiny_model, torch.tensor([3]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_scores_as_the_cpu_does(tiny_model_dir, ids):
    from charrnn import load_model

    cpu, cuda = load_model(tiny_model_dir, "cpu"), load_model(tiny_model_dir, "cuda")
    for adapt in (None, Adapt(lr=3e-3, decay=0.01)):
        assert score(cuda, ids,
                     adapt).nats_per_char == pytest.approx(score(cpu, ids, adapt).nats_per_char, abs=1e-3)
    assert torch.equal(score(cuda, ids, Adapt()).logprobs, score(cuda, ids, Adapt()).logprobs)


# ------------------------------------------------------------------------- the CLI

def run_cli(capsys, *argv):
    code = evaluate.main([*map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_adapt_reports_its_settings_and_never_writes_the_weights(tiny_model_dir, tmp_path, capsys,
                                                                     one_thread):
    text = tmp_path / "t.txt"
    text.write_text(PHRASE, encoding="utf-8")
    before = weights_hash(tiny_model_dir)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, "--device", "cpu")
    assert code == 0, err
    static = json.loads(out)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, "--device", "cpu",
                             "--adapt", "--adapt-lr", "0.01", "--adapt-decay", "0.001",
                             "--adapt-learn", "top")
    assert code == 0, err
    adaptive = json.loads(out)
    assert static["adaptive"] is False and "adapt" not in static
    assert adaptive["adaptive"] is True and adaptive["adapt"] == {"method": "adam+decay", "lr": 0.01,
                                                                  "decay": 0.001,
                                                                  "chunk": Adapt.chunk, "learn": "top"}
    assert adaptive["chars"] == static["chars"] == len(PHRASE)
    assert adaptive["nats_per_char"] < static["nats_per_char"]
    assert weights_hash(tiny_model_dir) == before


def test_cli_reads_the_default_corpus_and_shows_progress_on_long_texts(tiny_model_dir, tmp_path, capsys,
                                                                       monkeypatch, one_thread):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TINY_TEXT * 4, encoding="utf-8")
    monkeypatch.setattr("charrnn.data.find_corpus", lambda: corpus)
    monkeypatch.setattr(evaluate, "PROGRESS_FROM", 1000)
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["chars"] == len(TINY_TEXT * 4)
    assert "char" in err and "%" in err  # tqdm's bar on stderr, the JSON alone on stdout


@pytest.mark.parametrize("flags,message", [(["--adapt", "--adapt-lr", "-1"], "learning rate must be"),
                                           (["--adapt", "--adapt-decay", "1"], "decay toward"),
                                           (["--max-chars", "1"], "at least 2"),
                                           (["--mix", "--mix-orders", "2,x"], "--mix-orders must be"),
                                           (["--mix", "--mix-orders", "0"], "--mix-orders must be"),
                                           (["--mix", "--mix-prior", "/no/such.txt"], "no such file")])
def test_cli_bad_settings_one_line_exit_2(tiny_model_dir, tmp_path, capsys, flags, message):
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT, encoding="utf-8")
    code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--data", text, *flags)
    assert code == 2 and out == "" and err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bench_compressors_writes_its_table(tiny_model_dir, tmp_path):
    """bench/compressors.py end to end on a tiny text, with the standard library's compressors only."""
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT * 10, encoding="utf-8")
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "bench/compressors.py", "--weights", str(tiny_model_dir),
                           "--data", str(text), "--max-chars", "300", "--only", "gzip,bz2,xz", "--no-install",
                           "--results", str(results)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = results.read_text(encoding="utf-8")
    for row in ["charrnn static", "charrnn adaptive (", "charrnn adaptive + counts", "gzip -9",
                "bzip2 -9", "xz -9e"]:
        assert row in body
    assert "zpaq" not in body.split("| reader")[1].split("- Text")[0]  # not asked for, so not in the table


def test_read_aligns_logprobs_with_the_text_and_skips_unknown_chars(tiny_model, one_thread):
    text = "En un lugar € de la\r\nMancha"
    reading = evaluate.read(tiny_model, text)
    assert reading.text == "En un lugar € de la\nMancha"  # normalized as the model reads
    assert len(reading.logprobs) == len(reading.text) and reading.unknown == {"€": 1}
    assert reading.logprobs[0] is None and reading.logprobs[reading.text.index("€")] is None
    known = [lp for lp in reading.logprobs if lp is not None]
    assert known == pytest.approx(reading.score.logprobs.tolist())
    assert reading.score.chars == len(reading.text) - 1
    words = reading.surprising_words(3)
    assert len(words) == 3 and words[0][1] >= words[1][1] >= words[2][1] > 0
    assert {w for w, _ in words} <= {"En", "un", "lugar", "de", "la", "Mancha"}
    with pytest.raises(ValueError, match="at least 2 characters"):
        evaluate.read(tiny_model, "€€ x")


# ------------------------------------------------------------------------- mixing with a count model

def reference_count_probs(mix: Mix, seen: list[int], context: list[int], target: int,
                          vocab_size: int) -> list[float]:
    """mixing.py's interpolated estimate by hand, with Python dicts: p_n for each mixed order."""
    p, out = 1.0 / vocab_size, []
    padded = [-1] * 16 + seen  # the stream's start is padded, as in mixing.py
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


def test_cli_mix_primes_the_counts_and_records_the_settings(tiny_model_dir, tmp_path, capsys, monkeypatch,
                                                            one_thread):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PHRASE * 5, encoding="utf-8")
    monkeypatch.setattr("charrnn.data.find_corpus", lambda: corpus)
    runs = {}
    for name, flags in {"adapt": ["--adapt"], "mix": ["--mix", "--mix-orders", "2,4"],
                        "unprimed": ["--mix", "--mix-orders", "2,4", "--mix-prior", "none"]}.items():
        code, out, err = run_cli(capsys, "--weights", tiny_model_dir, "--split", "val", "--device",
                                 "cpu", *flags)
        assert code == 0, err
        runs[name] = json.loads(out)
    train_chars = len(PHRASE * 5) - len(PHRASE * 5) // 5
    assert runs["mix"]["adapt"]["mix"] == {"orders": [2, 4], "discount": Mix.discount,
                                           "strength": Mix.strength, "lr": Mix.lr, "prior_chars": train_chars}
    assert runs["unprimed"]["adapt"]["mix"]["prior_chars"] == 0 and runs["adapt"]["adaptive"] is True
    assert runs["mix"]["nats_per_char"] < runs["unprimed"]["nats_per_char"] < runs["adapt"]["nats_per_char"]


@pytest.mark.parametrize("adapt", [None, Adapt()], ids=["static", "adaptive"])
def test_a_tick_follows_the_reading_piece_by_piece(tiny_model, adapt, one_thread):
    # 4,000+ chars: several pieces
    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 8), dtype=torch.long)
    ticks = []
    score(tiny_model, ids, adapt, tick=lambda done, total: ticks.append((done, total)))
    assert len(ticks) > 3 and ticks[-1] == (len(ids) - 1, len(ids) - 1)
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)


def test_a_tick_that_raises_stops_the_static_read_early_and_its_threads_end(tiny_model, monkeypatch,
                                                                            one_thread):
    blocks = []
    stage = evaluate._layer_stage

    def counting(layer, source, outbox, errors):  # count what the first layer reads
        if not isinstance(source, __import__("queue").Queue):
            source = (blocks.append(1) or x for x in source)
        stage(layer, source, outbox, errors)

    monkeypatch.setattr(evaluate, "_layer_stage", counting)

    def stop(done, total):
        raise KeyboardInterrupt  # the caller has gone

    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 60), dtype=torch.long)  # ~70 blocks of 512
    with pytest.raises(KeyboardInterrupt):
        score(tiny_model, ids, tick=stop)
    assert not layer_threads() and len(blocks) < 30  # the layers stopped soon, not at the end of the text
