"""The model: embedding -> stacked GRU/LSTM -> linear head over the vocabulary.

Regularization while training, as in AWD-LSTM (Merity et al., 2017, "Regularizing and Optimizing
LSTM Language Models"): dropout on the embedding's output and the RNN's output, optionally *locked*
(one mask per sequence, the same at every time step); embedding dropout (whole rows of the table);
and DropConnect on the hidden-to-hidden weights (`weight_drop`: one mask on the recurrent matrices
per forward pass). None of them changes the weights' shapes or is used in eval mode.

CharRNN is also a PyTorchModelHubMixin, so save_pretrained / from_pretrained / push_to_hub
write and read config.json (every __init__ argument, the vocabulary included),
model.safetensors and the model card (charrnn/card.py's template). `generate` is a one-line
front door to charrnn/generate.py, the code the app and the CLI use.
"""
import contextlib
import io

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch.func import functional_call

from .card import CARD_TEMPLATE, CODE_URL, LICENSE, TAGS, card_kwargs
from .text import Vocab

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c), each (L, B, H)


class CharRNN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="charrnn",
    tags=list(TAGS),  # a copy: the mixin appends its own tags to the list it is given
    license=LICENSE,
    pipeline_tag="text-generation",
    model_card_template=CARD_TEMPLATE,
    repo_url=CODE_URL,
    docs_url=CODE_URL,
):
    def __init__(self, vocab: str, strip_accents: bool = False, cell: str = "lstm",
                 embed_dim: int = 128, hidden_size: int = 512, num_layers: int = 2,
                 dropout: float = 0.2, locked_dropout: bool = False, embed_dropout: float = 0.0,
                 weight_drop: float = 0.0):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        if len(vocab) < 2 or min(embed_dim, hidden_size, num_layers) < 1 or not all(
                0 <= p < 1 for p in (dropout, embed_dropout, weight_drop)):
            raise ValueError("need a vocabulary of 2+ chars, positive sizes and dropouts in [0, 1)")
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

    @torch.no_grad()
    def generate(self, text: str = "", length: int = 300, temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None) -> str:
        """The continuation of `text` (without it), sampled as the app samples: temperature 0 is
        greedy, top_k 0 and top_p 1 are off, the same `seed` gives the same text. Characters the
        model does not know are mapped to close ones or dropped. Bad settings raise ValueError."""
        from .generate import Settings, complete  # generate.py imports this module

        settings = Settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, sampling_seed=seed)
        return complete(self, text, settings).sampled

    # ------------------------------------------------------------- the Hub mixin, made to use our card

    def generate_model_card(self, *args, **kwargs):
        """The card from charrnn/card.py's template. save_pretrained and push_to_hub pass their
        `model_card_kwargs` here: repo_id, corpus, val_nats, facts, recipe, samples, command, plot."""
        from huggingface_hub import ModelCard

        return ModelCard.from_template(template_str=self._hub_mixin_info.model_card_template,
                                       **card_kwargs(self, **kwargs))

    def save_pretrained(self, save_directory, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's save_pretrained; the card's code loads from this folder unless
        `model_card_kwargs` names a repo_id."""
        model_card_kwargs = {"repo_id": str(save_directory), **(model_card_kwargs or {})}
        return super().save_pretrained(save_directory, model_card_kwargs=model_card_kwargs, **kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's push_to_hub; the card's code loads from the repo pushed to."""
        return super().push_to_hub(repo_id, model_card_kwargs={**(model_card_kwargs or {}), "repo_id": repo_id},
                                   **kwargs)

    @classmethod
    def _load_as_safetensor(cls, model: "CharRNN", model_file: str, map_location: str, strict: bool) -> "CharRNN":
        """The mixin's last step, through load_model's checks: the shapes config.json implies,
        floating-point and finite values; each failure a WeightsError naming the tensor."""
        from .hub import WeightsError, checked_state_dict

        try:
            state = checked_state_dict(model_file, model._hub_mixin_config if strict else None)
        except WeightsError as e:
            raise WeightsError(f"could not load weights from {model_file}: {e}") from None
        model.load_state_dict(state, strict=strict)
        return model.to(map_location).eval()

    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs):
        """The mixin's loader, strict by default (a missing or extra tensor is an error) and quiet
        (it prints "Loading weights from local directory"). charrnn.hub.load_model checks more."""
        with contextlib.redirect_stdout(io.StringIO()):
            return super()._from_pretrained(strict=strict, **kwargs)


def detach_state(state: State) -> State:
    """Keep the values, cut the graph: gradients stop at chunk boundaries (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()

