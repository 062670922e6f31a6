"""The model: embedding -> stacked GRU/LSTM -> linear head over the vocabulary.

CharRNN is also a PyTorchModelHubMixin, so save_pretrained / from_pretrained / push_to_hub
write and read config.json (every __init__ argument, the vocabulary included) and
model.safetensors. Nothing in this file knows about files, training or sampling.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin

from .text import Vocab

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # GRU: h; LSTM: (h, c), each (L, B, H)


class CharRNN(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="charrnn",
    tags=["char-rnn", "text-generation", "spanish", "don-quijote"],
    license="mit",
    language="es",
    pipeline_tag="text-generation",
):
    def __init__(self, vocab: str, strip_accents: bool = False, cell: str = "lstm",
                 embed_dim: int = 128, hidden_size: int = 512, num_layers: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
        if len(vocab) < 2 or min(embed_dim, hidden_size, num_layers) < 1 or not 0 <= dropout < 1:
            raise ValueError("need a vocabulary of 2+ chars, positive sizes and 0 <= dropout < 1")
        self.vocab = Vocab(vocab, strip_accents)
        self.cell = cell
        self.embed = nn.Embedding(len(vocab), embed_dim)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(embed_dim, hidden_size, num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, len(vocab))

    def forward(self, ids: torch.Tensor, state: State | None = None, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """ids (B, T) -> logits (B, T, V), the state after the last step, and with targets (B, T)
        the mean next-char cross-entropy in nats (else None)."""
        x = self.drop(self.embed(ids))  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if targets is not None:  # float(): the loss is summed in fp32 even under autocast
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, state, loss

    def init_state(self, batch_size: int) -> State:
        """Zero state, on the model's device: the state at the start of a text."""
        p = next(self.parameters())
        h = torch.zeros(self.rnn.num_layers, batch_size, self.rnn.hidden_size, device=p.device, dtype=p.dtype)
        return (h, h.clone()) if self.cell == "lstm" else h

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Keep the values, cut the graph: gradients stop at chunk boundaries (truncated BPTT)."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()

