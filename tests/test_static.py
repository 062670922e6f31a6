"""charrnn.static: the pipelined static read equals one forward pass, and its layer threads always end."""
import queue
import threading
import time

import pytest
import torch

from charrnn import static
from charrnn.model import CharRNN
from charrnn.score import score
from conftest import TINY_TEXT


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
    stage = static.layer_stage

    def slow_to_end(*args):
        stage(*args)
        time.sleep(0.3)  # the thread outlives its last block

    monkeypatch.setattr(static, "layer_stage", slow_to_end)
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


def test_a_tick_that_raises_stops_the_static_read_early_and_its_threads_end(tiny_model, monkeypatch,
                                                                            one_thread):
    blocks = []
    stage = static.layer_stage

    def counting(layer, source, outbox, errors):  # count what the first layer reads
        if not isinstance(source, queue.Queue):
            source = (blocks.append(1) or x for x in source)
        stage(layer, source, outbox, errors)

    monkeypatch.setattr(static, "layer_stage", counting)

    def stop(done, total):
        raise KeyboardInterrupt  # the caller has gone

    ids = torch.tensor(tiny_model.vocab.encode(TINY_TEXT * 60), dtype=torch.long)  # ~70 blocks of 512
    with pytest.raises(KeyboardInterrupt):
        score(tiny_model, ids, tick=stop)
    assert not layer_threads() and len(blocks) < 30  # the layers stopped soon, not at the end of the text
