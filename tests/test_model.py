"""The model's forward: logits, carried state, and the loss when targets are given."""
import torch

from charrnn.model import CharRNN


def test_forward_with_targets_returns_the_mean_next_char_cross_entropy():
    torch.manual_seed(0)
    model = CharRNN("abcd", cell="gru", embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0).eval()
    x, y = torch.randint(4, (3, 5)), torch.randint(4, (3, 5))  # (B, T)
    logits, state, loss = model(x, targets=y)
    assert logits.shape == (3, 5, 4) and state.shape == (1, 3, 8)
    want = -logits.log_softmax(-1).gather(-1, y[..., None]).mean()  # the definition, written out
    assert torch.allclose(loss, want)
    assert model(x)[2] is None  # no targets, no loss
