"""A count (n-gram) model of chars, mixed with the network as context-mixing compressors do.

The counts start from a prior text (the training split) and keep growing with the text as it is
read; the mixer learns online how far to trust the network and each order of counts. Everything is
done one chunk at a time, vectorized: predict a chunk's chars from what was learnt before it, then
learn from it. So every char is scored before the counts or the mixer see it.

Count model: interpolated absolute discounting (PPM / Kneser-Ney style), for each context length n
in turn, from the uniform distribution up:
    p_n(c) = (max(count(ctx_n, c) - D, 0) + (D * distinct(ctx_n) + B) * p_{n-1}(c)) / (total(ctx_n) + B)
Each p_n is a normalized distribution, so only the target char's probability is ever needed.
Mixer: p(c) = sum_k w_k p_k(c) over the network and the count model's orders, with weights
softmax(theta[s]) chosen by s, how many of those orders' contexts have been seen before; theta takes
one gradient step on each chunk's log loss after the chunk is scored.
"""
import math
from dataclasses import dataclass

import numpy as np

NET_PRIOR = 2.0  # the mixer starts trusting the network e^2 = 7.4 times more than each count order
HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # contexts are hashed to 64 bits: collisions are negligible


@dataclass(frozen=True)
class Mix:
    """Settings of the count model and of the mixer (see the module docstring)."""
    orders: tuple[int, ...] = (3, 5, 7, 9)  # context lengths mixed with the network (0 is always the base)
    discount: float = 0.3  # D: subtracted from each seen count, given to the shorter context
    strength: float = 0.5  # B: the shorter context's extra weight, for contexts seen few times
    lr: float = 0.2  # mixer learning rate, per char (see bench/RESULTS.md for how these were chosen)

    def __post_init__(self):
        orders = tuple(self.orders)
        whole = all(isinstance(n, int) and 1 <= n <= 16 for n in orders)
        if not orders or not whole or len(set(orders)) != len(orders):
            raise ValueError("the mixed orders must be distinct whole numbers from 1 to 16, not "
                             f"{self.orders}")
        object.__setattr__(self, "orders", tuple(sorted(orders)))
        if not (math.isfinite(self.discount) and 0 <= self.discount < 1):
            raise ValueError(f"the count discount must be in [0, 1), not {self.discount}")
        if not (math.isfinite(self.strength) and self.strength > 0):
            raise ValueError(f"the count strength must be a positive number, not {self.strength}")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ValueError(f"the mixer learning rate must be a number >= 0, not {self.lr}")


def _table_ids(sequence: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each position t of `sequence`: the id of its context (the `order` chars before t; the
    start is padded) and of its (context, char) pair; and each pair's context id. Ids name strings,
    they carry no counts: counts are only ever added for chars already read."""
    h = np.zeros(len(sequence), dtype=np.uint64)
    for k in range(1, order + 1):  # h(t) = hash of sequence[t-order: t], built one char back at a time
        back = np.zeros(len(sequence), dtype=np.uint64)
        back[k:] = sequence[:-k].astype(np.uint64) + np.uint64(1)
        h = h * HASH_MUL + back
    ctx_keys, ctx = np.unique(h, return_inverse=True)
    pair_keys, pair = np.unique(h * HASH_MUL + sequence.astype(np.uint64) + np.uint64(1), return_inverse=True)
    pair_ctx = np.empty(len(pair_keys), dtype=np.int64)
    pair_ctx[pair] = ctx
    return ctx.astype(np.int64), pair.astype(np.int64), pair_ctx


class CountMixer:
    """Counts and mixer over one sequence of token ids (prior text, then the text to score), read in
    order: `predict(a, b, net_logp)` for targets a..b-1 of the sequence, then `learn()` from them."""

    def __init__(self, mix: Mix, sequence: np.ndarray, vocab_size: int, learned: int):
        self.mix, self.vocab_size = mix, vocab_size
        self.orders = (0, *mix.orders)  # the count model's chain; the mixer sees mix.orders
        self.ctx, self.pair, self.total, self.distinct, self.count, self.pair_ctx = [], [], [], [], [], []
        for n in self.orders:
            ctx, pair, pair_ctx = _table_ids(sequence, n)
            self.ctx.append(ctx), self.pair.append(pair), self.pair_ctx.append(pair_ctx)
            self.count.append(np.zeros(len(pair_ctx), dtype=np.int64))
            self.total.append(np.zeros(ctx.max() + 1, dtype=np.int64))
            self.distinct.append(np.zeros(ctx.max() + 1, dtype=np.int64))
        self.learned = 0
        self._learn_upto(learned)
        k = 1 + len(mix.orders)  # the network, then each mixed order
        self.theta = np.zeros((len(mix.orders) + 1, k))  # (selectors, components)
        self.theta[:, 0] = NET_PRIOR
        self._last = None

    def _learn_upto(self, end: int) -> None:
        """Add the chars at sequence positions learned..end-1 to every order's counts."""
        a, self.learned = self.learned, end
        for i in range(len(self.orders)):
            pairs, n = np.unique(self.pair[i][a:end], return_counts=True)
            new = pairs[self.count[i][pairs] == 0]
            self.count[i][pairs] += n
            np.add.at(self.total[i], self.pair_ctx[i][pairs], n)
            np.add.at(self.distinct[i], self.pair_ctx[i][new], 1)

    def components(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(b-a, len(orders)) probabilities of targets a..b-1 under each mixed order, and the
        selector of each (the number of mixed orders whose context has been seen), from counts so far."""
        d, strength = self.mix.discount, self.mix.strength
        p = np.full(b - a, 1.0 / self.vocab_size)
        out, seen = [], np.zeros(b - a, dtype=np.int64)
        for i, n in enumerate(self.orders):
            ctx = self.ctx[i][a:b]
            total, distinct = self.total[i][ctx], self.distinct[i][ctx]
            c = self.count[i][self.pair[i][a:b]]
            p = (np.maximum(c - d, 0) + (d * distinct + strength) * p) / (total + strength)
            if n > 0:
                out.append(p)
                seen += total > 0
        return np.stack(out, axis=1), seen

    def predict(self, a: int, b: int, net_logp: np.ndarray) -> np.ndarray:
        """Mixed log-probabilities of sequence targets a..b-1 (the network's given), from what was
        learnt so far."""
        if a < self.learned:
            raise ValueError("a char must be scored before the counts learn it")
        probs, sel = self.components(a, b)
        probs = np.concatenate([np.exp(net_logp)[:, None], probs], axis=1)  # (T, K)
        w = np.exp(self.theta[sel] - self.theta[sel].max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)  # (T, K)
        mixed = (w * probs).sum(axis=1)
        self._last = (a, b, sel, w, probs, mixed)
        return np.log(mixed)

    def learn(self) -> None:
        """After `predict`: the mixer takes a gradient step on those chars' log loss, and the counts
        add them."""
        a, b, sel, w, probs, mixed = self._last
        grad = w - w * probs / mixed[:, None]  # d(-log mixed)/d theta[sel], (T, K)
        np.add.at(self.theta, sel, -self.mix.lr * grad)
        self._learn_upto(b)
        self._last = None
