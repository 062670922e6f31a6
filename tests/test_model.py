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


def regularized(**kw) -> CharRNN:
    settings = dict(cell="lstm", embed_dim=6, hidden_size=8, num_layers=2, dropout=0.5, locked_dropout=True,
                    embed_dropout=0.5, weight_drop=0.5)
    return CharRNN("abcdefgh", **{**settings, **kw})


def test_locked_dropout_keeps_one_mask_for_the_whole_sequence():
    torch.manual_seed(0)
    x = torch.ones(4, 50, 16)  # (B, T, C)
    locked = regularized().train().drop(x)
    assert (locked == locked[:, :1]).all()  # every step has the first step's mask
    assert (locked == 0).any() and (locked == 2).any()  # kept units scaled by 1 / (1 - p)
    plain = regularized(locked_dropout=False).train().drop(x)
    assert not (plain == plain[:, :1]).all()  # ordinary dropout draws a mask per step


def test_embedding_dropout_drops_whole_characters():
    torch.manual_seed(0)
    model = regularized().train()
    ids = torch.arange(8).repeat(3, 10)  # (3, 80): every char many times
    rows = model.embed_rows(ids)  # (3, 80, 6)
    dropped = rows.abs().sum(-1) == 0  # (3, 80)
    for char in range(8):  # each char is dropped everywhere in the batch or nowhere
        where = dropped[ids == char]
        assert where.all() or not where.any()
    assert dropped.any() and not dropped.all()
    kept = ~dropped
    torch.testing.assert_close(rows[kept], 2 * model.embed.weight[ids[kept]])


def test_weight_drop_masks_the_recurrent_weights_and_trains_the_real_ones():
    torch.manual_seed(0)
    model = regularized(dropout=0.0, embed_dropout=0.0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(8, (2, 12))
    _, _, loss = model(x, targets=x)
    loss.backward()
    grad = model.rnn.weight_hh_l0.grad
    assert grad is not None and (grad == 0).float().mean() > 0.3  # masked entries get no gradient
    assert (model.rnn.weight_ih_l0.grad != 0).float().mean() > 0.9  # the input weights are not dropped
    for k, v in model.state_dict().items():  # the forward pass changed no weight
        torch.testing.assert_close(v, before[k])


def test_the_regularizers_are_off_in_eval_mode():
    torch.manual_seed(0)
    model = regularized().eval()
    plain = CharRNN("abcdefgh", cell="lstm", embed_dim=6, hidden_size=8, num_layers=2, dropout=0.0).eval()
    plain.load_state_dict(model.state_dict())  # the regularizers add no weights
    x = torch.randint(8, (2, 12))
    torch.testing.assert_close(model(x)[0], plain(x)[0])
    torch.testing.assert_close(model(x)[0], model(x)[0])  # and nothing random is left
