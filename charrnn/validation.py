"""Training's validation loss: the mean next-char cross-entropy of a text, in nats per char.

During training the text is cut into contiguous parts read side by side (fast, and close to the
exact score); the final score reads it as one sequence, exactly as charrnn.score.score does.
"""
import torch

from .model import CharRNN, detach_state
from .precision import autocast_for
from .score import score


@torch.no_grad()
def nats_per_char(model: CharRNN, ids: torch.Tensor, rows: int = 1, chunk: int = 2048) -> float:
    """Mean next-char cross-entropy over `ids` (1-D), in nats. Every char after the first is a target.

    rows=1 reads the text as one sequence (the exact score). rows>1 cuts it into that many
    contiguous rows read side by side: ~rows times faster, and only the first few chars of
    each row lose their context, so during training it tracks the exact score closely."""
    if rows == 1:
        return score(model, ids).nats_per_char  # the exact score, computed as the CLI computes it
    was_training = model.training
    model.eval()
    with autocast_for(model, "read"):
        total = _rows_total(model, ids, rows, chunk)
    model.train(was_training)
    return total / (len(ids) - 1)


def _rows_total(model: CharRNN, ids: torch.Tensor, rows: int, chunk: int) -> float:
    """The summed cross-entropy of nats_per_char's rows, then of the leftover tail."""
    device = next(model.parameters()).device
    length = (len(ids) - 1) // rows
    x_all = ids[: rows * length].view(rows, length).to(device)  # (R, L)
    y_all = ids[1: rows * length + 1].view(rows, length).to(device)  # (R, L)
    total, state = 0.0, model.init_state(rows)
    for i in range(0, length, chunk):
        y = y_all[:, i: i + chunk]  # (S, t)
        _, state, loss = model(x_all[:, i: i + chunk], state, targets=y)
        total += loss.item() * y.numel()  # the mean over this chunk back to a sum
        state = detach_state(state)
    # The leftover tail (at most rows-1 chars) is scored on its own, from a zero state.
    tail_start = rows * length
    if len(ids) - 1 > tail_start:
        y = ids[tail_start + 1:].view(1, -1).to(device)  # (1, t)
        _, _, loss = model(ids[tail_start:-1].view(1, -1).to(device), model.init_state(1), targets=y)
        total += loss.item() * y.numel()
    return total
