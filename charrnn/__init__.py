"""charrnn: a character-level language model of Don Quijote."""
from .generate import Output, Settings, complete, stream
from .model import CharRNN
from .text import Vocab, normalize

__all__ = ["CharRNN", "Vocab", "normalize", "Settings", "Output", "stream", "complete"]
