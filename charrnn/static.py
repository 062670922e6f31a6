"""Static reading: the model reads a text with its weights as trained, one RNN layer per thread.

The layers form a pipeline over blocks of chars: layer 2 reads block k while layer 1 reads block
k+1, so a 2-layer model reads ~1.3x faster on 2 cores, with the same numbers as one layer after
the other (the state is carried from block to block). charrnn.score.score is the entry point.
"""
import queue
import threading

import torch
import torch.nn as nn

from .model import CharRNN, target_logprobs
from .precision import autocast_for


@torch.inference_mode()
def read(model: CharRNN, ids: torch.Tensor, progress, block: int = 512) -> torch.Tensor:
    """(N-1,) log-probability of each char of `ids` (1-D) after the ones before it; the head runs
    in fp32. `progress.update(n)` is told after each block (an exception it raises stops the read)."""
    device = next(model.parameters()).device
    x_all, y_all = ids[:-1].to(device)[None], ids[1:].to(device)[None]  # (1, N-1)
    stop = threading.Event()  # set when the caller stops early: the layers then end at the next block
    blocks = (model.embed(x_all[:, i: i + block]) for i in range(0, x_all.size(1), block)
              if not stop.is_set())  # (1, t, E) each
    boxes, errors = [queue.Queue(maxsize=4) for _ in range(model.rnn.num_layers)], []
    threads = [threading.Thread(target=layer_stage, name=f"charrnn-layer-{k + 1}", daemon=True,
                                args=(in_precision(model.rnn_layers(k, k + 1), model),
                                      blocks if k == 0 else boxes[k - 1], box, errors))
               for k, box in enumerate(boxes)]
    for t in threads:
        t.start()
    out, i, h = [], 0, ()
    try:
        while (h := boxes[-1].get()) is not None:  # (1, t, H) the top layer's output
            out.append(target_logprobs(model.head(h.float()), y_all[:, i: i + h.size(1)]))  # head in fp32
            i += h.size(1)
            progress.update(h.size(1))
    finally:  # every layer's thread ends before this returns: one still in torch when Python exits aborts it
        stop.set()
        while h is not None:  # stopped early (the head or a tick raised): drain the layers
            h = boxes[-1].get()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return torch.cat(out)


def in_precision(layer: nn.Module, model: CharRNN):
    """`layer` run in the model's reading precision, in the thread that calls it (autocast is per thread)."""
    def run(x: torch.Tensor, state):
        with autocast_for(model, "read"):
            return layer(x, state)  # (1, t, H)
    return run


def layer_stage(layer: nn.Module, source, outbox: queue.Queue, errors: list) -> None:
    """One RNN layer over the blocks from `source` (an iterator, or the queue of the layer below,
    where None ends the text), state carried, each output passed on; an error is kept for the
    caller and ends the text, and the layer below is drained so that it can finish."""
    try:
        with torch.inference_mode():  # (per thread)
            state = None
            for x in source if not isinstance(source, queue.Queue) else iter(source.get, None):
                x, state = layer(x, state)  # (1, t, H)
                outbox.put(x)
    except BaseException as e:  # raised again in the caller's thread
        errors.append(e)
        while isinstance(source, queue.Queue) and source.get() is not None:
            pass
    finally:
        outbox.put(None)
