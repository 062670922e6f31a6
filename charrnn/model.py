"""The model: embedding -> stacked GRU/LSTM -> linear head over the vocabulary.

Regularization while training, as in AWD-LSTM (Merity et al., 2017, "Regularizing and Optimizing
LSTM Language Models"): dropout on the embedding's output and the RNN's output, optionally *locked*
(one mask per sequence, the same at every time step); embedding dropout (whole rows of the table);
and DropConnect on the hidden-to-hidden weights (`weight_drop`: one mask on the recurrent matrices
per forward pass). None of them changes the weights' shapes or is used in eval mode.

CharRNN is also a PyTorchModelHubMixin (its public API): save_pretrained / push_to_hub write
config.json (every __init__ argument, the vocabulary included) and model.safetensors, and
`from_pretrained` is the package's one loading path, every step checked (charrnn/weights.py) so
that bad weights are one line (a WeightsError) before anything is allocated. The class people
use, with `generate` and the model card, is charrnn.CharRNN (charrnn/pretrained.py), this class
with those on top.
"""
import inspect
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch.func import functional_call

from . import weights
from .text import Vocab

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c), each (L, B, H)


MAX_WIDTH = 8192  # embedding and hidden sizes above this will not train or load here
MAX_LAYERS = 16


class CharRNN(nn.Module, PyTorchModelHubMixin, library_name="charrnn", pipeline_tag="text-generation"):
    # files from_pretrained also fetches from a Hub repo, when it has them
    optional_files: tuple[str, ...] = ()

    def __init__(self, vocab: str, strip_accents: bool = False, cell: str = "lstm",
                 embed_dim: int = 128, hidden_size: int = 512, num_layers: int = 2,
                 dropout: float = 0.2, locked_dropout: bool = False, embed_dropout: float = 0.0,
                 weight_drop: float = 0.0):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        for name, size, most in [("embed_dim", embed_dim, MAX_WIDTH), ("hidden_size", hidden_size, MAX_WIDTH),
                                 ("num_layers", num_layers, MAX_LAYERS)]:
            if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= most:
                raise ValueError(f"{name} must be a whole number from 1 to {most}, not {size!r}")
        if not isinstance(vocab, str) or len(vocab) < 2 or not all(
                isinstance(p, (int, float)) and 0 <= p < 1 for p in (dropout, embed_dropout, weight_drop)):
            raise ValueError("need a vocabulary of 2+ chars (a string) and dropouts in [0, 1)")
        self.vocab = Vocab(vocab, strip_accents)
        self.cell = cell
        self.embed = nn.Embedding(len(vocab), embed_dim)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(embed_dim, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0)
        self.head = nn.Linear(hidden_size, len(vocab))
        self.dropout, self.locked_dropout = dropout, locked_dropout
        self.embed_dropout, self.weight_drop = embed_dropout, weight_drop

    def forward(self, ids: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """ids (B, T) -> logits (B, T, V), the state after the last step, and with targets (B, T)
        the mean next-char cross-entropy in nats (else None)."""
        x = self.drop(self.embed_rows(ids))  # (B, T, E)
        out, state = self.recur(x, state)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if targets is not None:  # float(): the loss is summed in fp32 even under autocast
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, state, loss

    def embed_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The embedding; in training with embed_dropout, some chars' rows are zeroed for the whole
        batch (every occurrence of those chars) and the rest scaled up. # (B, T) -> (B, T, E)"""
        weight = self.embed.weight  # (V, E)
        if self.training and self.embed_dropout > 0:
            keep = 1 - self.embed_dropout
            weight = weight * weight.new_empty(weight.size(0), 1).bernoulli_(keep) / keep
        return F.embedding(ids, weight)

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on a sequence of vectors; locked: one mask per sequence, the same at every step,
        so a unit is off for the whole chunk rather than flickering. # (B, T, C)"""
        if not self.training or self.dropout == 0:
            return x
        if not self.locked_dropout:
            return F.dropout(x, self.dropout, training=True)
        keep = 1 - self.dropout
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(keep) / keep  # (B, 1, C) mask

    def recur(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        """The RNN; in training with weight_drop, its hidden-to-hidden matrices with one DropConnect
        mask for this whole forward pass (torch.func.functional_call runs the same module on them, so
        the gradients reach the real weights). # (B, T, E) -> (B, T, H)"""
        if not self.training or self.weight_drop == 0:
            return self.rnn(x, state)
        dropped = {name: F.dropout(w, self.weight_drop, training=True)
                   for name, w in self.rnn.named_parameters() if name.startswith("weight_hh")}
        return functional_call(self.rnn, dropped, (x, state))

    def rnn_layers(self, lo: int, hi: int) -> nn.Module:
        """Layers lo..hi-1 of the stacked RNN as a module of their own, on copies of their weights:
        to read a text one layer at a time (no dropout between them: for eval only)."""
        first = getattr(self.rnn, f"weight_ih_l{lo}")
        # Built on the meta device, so no random initialization of weights that are overwritten at
        # once (every read of a pasted text builds these; initializing them cost ~10 ms a layer)
        part = type(self.rnn)(first.size(1), self.rnn.hidden_size, hi - lo, batch_first=True, device="meta",
                              dtype=first.dtype).to_empty(device=first.device)
        part.load_state_dict({f"{name}_l{i - lo}": getattr(self.rnn, f"{name}_l{i}") for i in range(lo, hi)
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
        return part.eval()

    def init_state(self, batch_size: int) -> State:
        """Zero state, on the model's device: the state at the start of a text."""
        p = next(self.parameters())
        h = torch.zeros(self.rnn.num_layers, batch_size, self.rnn.hidden_size, device=p.device, dtype=p.dtype)
        return (h, h.clone()) if self.cell == "lstm" else h

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- the one loading path

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *,
                        cache_dir: str | None = None,
                        map_location: torch.device | str = "cpu", log=None) -> "CharRNN":
        """A weights folder (config.json + model.safetensors) or a Hub repo id, loaded strictly and
        checked before anything is allocated: the config a JSON object of this class's settings,
        the safetensors header's shapes those it implies (the model built on the meta device),
        every tensor floating point and finite. Offline (HF_HUB_OFFLINE, or no answer from the Hub
        within seconds) a repo id comes from the local cache, and `log` says so. Any failure is
        one WeightsError line."""
        name = pretrained_model_name_or_path
        # says where itself
        folder = weights.weights_folder(name, cache_dir, log or _stderr, cls.optional_files)
        try:
            config = weights.load_config(folder / "config.json", set(_settings(cls)))
            header = weights.load_header(folder / "model.safetensors")
            weights.check_shapes(cls.shapes(config), header, {**_settings(cls), **config})
            model = cls(**config)
            model.load_state_dict(weights.load_tensors(folder / "model.safetensors"), strict=True)
        except weights.WeightsError as e:
            raise weights.WeightsError(f"could not load weights from {name}: {e}") from None
        return model.to(map_location).eval()

    @classmethod
    def shapes(cls, config: dict) -> dict[str, tuple[int, ...]]:
        """The tensors and shapes a model of these settings has, without a byte of memory (built on
        the meta device). Settings it cannot be built with are a WeightsError."""
        try:
            with torch.device("meta"):
                return {k: tuple(v.shape) for k, v in cls(**config).state_dict().items()}
        except (TypeError, ValueError) as e:
            raise weights.WeightsError(f"config.json: {weights.first_line(e)}") from None


def _settings(cls) -> dict:
    """The settings __init__ takes, with their defaults (no default: None)."""
    params = inspect.signature(cls.__init__).parameters
    return {k: (None if p.default is p.empty else p.default) for k, p in params.items() if k != "self"}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def detach_state(state: State) -> State:
    """Keep the values, cut the graph: gradients stop at chunk boundaries (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def target_logprobs(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1, T, V) logits and (1, T) targets -> (T,) log-probability of each target, in fp32."""
    return F.log_softmax(logits[0].float(), dim=-1).gather(1, y[0, :, None])[:, 0]
