"""charrnn: a character-level language model of Don Quijote.

    from charrnn import CharRNN
    model = CharRNN.from_pretrained("weights")  # a folder or a Hub repo id, every step checked
    print(model.generate("En un lugar de la Mancha", length=300, temperature=0.8))
"""
from . import threads  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads)
from .generate import Output, Settings, complete, stream
from .pretrained import CharRNN, load_model
from .text import Vocab, normalize

__all__ = ["CharRNN", "load_model", "Vocab", "normalize", "Settings", "Output", "stream", "complete"]
