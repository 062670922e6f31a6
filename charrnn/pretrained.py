"""The model as people load, use and share it: `charrnn.CharRNN` is model.CharRNN (the network and
its one checked loading path, `from_pretrained`) with `generate` (charrnn/generate.py) and the
model card (charrnn/card.py) on top, and `load_model` is that loading path onto a device.

It sits above the layers it joins, so that none of them imports upward: model.py knows neither
generation nor the card.
"""
import os
import warnings

import torch
from huggingface_hub import ModelCard

from . import model
from .card import CARD_TEMPLATE, LICENSE, TAGS, render
from .corpus_profile import PROFILE_FILE
from .generate import Settings, complete


class CharRNN(model.CharRNN, tags=list(TAGS), license=LICENSE,  # tags: a copy, the mixin appends its own
              model_card_template=CARD_TEMPLATE):
    """A character-level language model; `CharRNN.from_pretrained(folder or OWNER/NAME)` loads one."""

    optional_files = ("README.md", PROFILE_FILE)  # the card's metrics and the corpus's page texts, when there

    @torch.no_grad()
    def generate(self, text: str = "", length: int = 300, temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 1.0, sampling_seed: int | None = None, *, seed: int | None = None) -> str:
        """The continuation of `text` (without it), sampled as the app samples: temperature 0 is
        greedy, top_k 0 and top_p 1 are off, the same `sampling_seed` gives the same text. Characters
        the model does not know are mapped to close ones or dropped. Bad settings raise ValueError.
        `seed` is sampling_seed's old name, still accepted with a FutureWarning."""
        if seed is not None:
            sampling_seed = _renamed_seed(seed, sampling_seed)
        settings = Settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                            sampling_seed=sampling_seed)
        return complete(self, text, settings).sampled

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The card from charrnn/card.py's template. save_pretrained and push_to_hub pass their
        `model_card_kwargs` here: repo_id, corpus, facts, recipe, samples, command, plot."""
        return render(self, **kwargs)

    def save_pretrained(self, save_directory, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's save_pretrained; the card's code loads from this folder unless
        `model_card_kwargs` names a repo_id."""
        model_card_kwargs = {"repo_id": str(save_directory), **(model_card_kwargs or {})}
        return super().save_pretrained(save_directory, model_card_kwargs=model_card_kwargs, **kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs):
        """The mixin's push_to_hub; the card's code loads from the repo pushed to."""
        return super().push_to_hub(repo_id,
                                   model_card_kwargs={**(model_card_kwargs or {}), "repo_id": repo_id},
                                   **kwargs)


def _renamed_seed(seed: int, sampling_seed: int | None) -> int:
    """generate's sampling seed given by its old name `seed` (which now means only the seed text),
    with a FutureWarning that points at the caller's line."""
    if sampling_seed is not None:
        raise TypeError("generate() got both sampling_seed and seed, its old name: pass only sampling_seed")
    # stacklevel 4: this function, generate, torch.no_grad's wrapper, then the caller
    warnings.warn("CharRNN.generate(seed=...) is deprecated: use sampling_seed=... ('seed' alone means "
                  "the seed text)", FutureWarning, stacklevel=4)
    return seed


def load_model(weights: str | os.PathLike, device: torch.device | str = "cpu", cache_dir: str | None = None,
               log=None) -> CharRNN:
    """CharRNN.from_pretrained onto `device`: a folder or a Hub repo id, every step checked, any
    failure one WeightsError line."""
    return CharRNN.from_pretrained(weights, cache_dir=cache_dir, map_location=device, log=log)
