"""The model card: one template for `save_pretrained`, `push_to_hub`, train.py and the Space.

CharRNN hands CARD_TEMPLATE to huggingface_hub's mixin (`model_card_template`) and renders it
through `ModelCard.from_template` with `card_kwargs(...)`: the YAML (license, language, tags,
datasets, model-index with the validation nats/char and bits/char) and the text come from the
same facts. `load_metrics` gives the model-index back as data, for the app's About panel.
"""
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .corpus_profile import CorpusProfile

# The package is on no package index: it is installed from a checkout of its repository.
INSTALL = "pip install .   # in a checkout of the charrnn repository (the package charrnn-quijote)"
LICENSE = "mit"
TAGS = ["char-rnn", "text-generation"]
TUTORIAL_NATS = 1.2446  # the PyTorch char-RNN tutorial's best validation loss, accent-stripped


def card_data(model, corpus: CorpusProfile | None):
    """The YAML front matter, with a model-index when the validation loss is known."""
    tags = TAGS + [model.cell] + list(corpus.tags if corpus else [])
    dataset = corpus and (corpus.dataset_id or corpus.name)
    val = corpus.validation if corpus else None
    results = None
    if val is not None:
        split = f"validation ({val.describe()}, by position)"
        metrics = [("nats_per_char", "Validation loss (nats/char)", val.nats_per_char),
                   ("bits_per_char", "Bits per character", val.bits_per_char)]
        results = [EvalResult(task_type="text-generation", task_name="Character-level language modeling",
                              dataset_type=dataset, dataset_name=corpus.name, dataset_split=split,
                              metric_type=kind, metric_name=name, metric_value=round(value, 4))
                   for kind, name, value in metrics]
    return ModelCardData(language=corpus.language_name if corpus else None, license=LICENSE,
                         library_name="charrnn",
                         tags=tags, datasets=[dataset] if dataset else None, pipeline_tag="text-generation",
                         model_name=title(model, corpus) if results else None, eval_results=results)


def title(model, corpus: CorpusProfile | None) -> str:
    rnn = model.rnn
    name = f"charrnn {model.cell.upper()} {rnn.num_layers}x{rnn.hidden_size}"
    return name + (f" ({corpus.name})" if corpus else "")


def card_kwargs(model, repo_id: str | None = None, corpus: CorpusProfile | None = None,
                facts: list[tuple[str, str]] | None = None, recipe: list[str] | None = None,
                samples: list[tuple[str, str]] | None = None, command: str | None = None,
                plot: bool = False) -> dict:
    """Everything CARD_TEMPLATE renders. `repo_id` is where the card's code loads the model from
    (a Hub repo id or a folder, as the user gave it); `corpus` what it was trained on and its
    validation score (corpus_profile); `facts` are (label, value) rows for the metrics table, e.g.
    the training time; `recipe` Markdown lines on how it was trained; `samples` (seed, continuation)."""
    rnn = model.rnn
    val = corpus.validation if corpus else None
    return dict(
        card_data=card_data(model, corpus), title=title(model, None), cell=model.cell.upper(),
        layers=rnn.num_layers, hidden=rnn.hidden_size, embed=model.embed.embedding_dim,
        params=f"{model.num_params():,}", vocab_size=len(model.vocab),
        vocab=json.dumps(model.vocab.chars, ensure_ascii=False),
        text_kind="accent-stripped (the tutorials' setting)" if model.vocab.strip_accents
        else "NFC, accents and other marks kept",
        corpus=corpus, chars=f"{corpus.chars:,}" if corpus and corpus.chars else None,
        val_pct=f"{val.val_frac:.0%}" if val else None, train_pct=f"{1 - val.val_frac:.0%}" if val else None,
        val_read=val.describe() if val else None, tutorial=TUTORIAL_NATS,
        nats=f"{val.nats_per_char:.4f}" if val else None, bits=f"{val.bits_per_char:.4f}" if val else None,
        facts=facts or [], recipe=recipe or [], command=command, plot=plot,
        samples=[(repr(seed), seed + text) for seed, text in samples or []],
        usage=usage(repo_id or "OWNER/NAME", corpus))


def render(model, **kwargs):
    """The card (a huggingface_hub ModelCard) of `model` from CARD_TEMPLATE; kwargs as card_kwargs."""
    return ModelCard.from_template(template_str=CARD_TEMPLATE, **card_kwargs(model, **kwargs))


def usage(repo_id: str, corpus: CorpusProfile | None = None) -> str:
    """The card's "Use" section for a model loaded from `repo_id` (as the user gave it), with one of
    the corpus's own seeds, scored on the file it was trained on (the default corpus is found by
    charrnn.evaluate itself; a folder or a dataset is not one file, so the user names one)."""
    seed = corpus.seeds[0] if corpus and corpus.seeds else None
    generate = f"{json.dumps(seed, ensure_ascii=False)}, " if seed else ""
    sample = f" --seed-text {shlex.quote(seed)}" if seed else ""
    data = "" if corpus is None or corpus.source is None else (
        " --data TEXT.txt" if corpus.dataset_id or Path(corpus.source).name != corpus.name
        else f" --data {shlex.quote(corpus.source)}")
    weights = shlex.quote(repo_id)
    return f"""## Use
```bash
{INSTALL}
```
```python
from charrnn import CharRNN
model = CharRNN.from_pretrained({json.dumps(repo_id)})
print(model.generate({generate}length=300, temperature=0.8))
```
From a terminal: `charrnn sample --weights {weights}{sample}`; score it:
`charrnn evaluate --weights {weights}{data} --split val`; in a browser: `charrnn app --model {weights}`.
"""


def retarget(card_text: str, repo_id: str, corpus: CorpusProfile | None = None) -> str:
    """The card with its "Use" section rewritten to load from `repo_id` (what `push` uploads)."""
    return re.sub(r"^## Use\n.*?(?=^## |\Z)", lambda _: usage(repo_id, corpus) + "\n", card_text, count=1,
                  flags=re.M | re.S)


@dataclass(frozen=True)
class Metrics:
    nats_per_char: float
    bits_per_char: float
    dataset: str
    split: str


def load_metrics(card_path: str | Path) -> Metrics | None:
    """The validation loss from a card's model-index, as data; None when the card has none."""
    try:
        results = ModelCard.load(card_path).data.eval_results or []
    except Exception:  # not a card, unreadable YAML: no metrics to show
        return None
    values = {r.metric_type: r for r in results}
    if "nats_per_char" not in values:
        return None
    nats = values["nats_per_char"]
    bits = (values["bits_per_char"].metric_value if "bits_per_char" in values
            else nats.metric_value / math.log(2))
    return Metrics(float(nats.metric_value), float(bits), nats.dataset_name, nats.dataset_split or "")


CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}{% if corpus %}, trained on `{{ corpus.name }}`{% endif %}

A {{ layers }}-layer {{ cell }} ({{ hidden }} units, embedding {{ embed }}, {{ params }} parameters,
{{ vocab_size }}-character vocabulary) that writes one character at a time{% if corpus %}, trained from
scratch on {{ corpus.description or corpus.name }}{% endif %}.
{% if nats %}
## Metrics
| | value |
|---|---|
| validation loss ({{ val_read }} of the text, state carried from its first char) | **{{ nats }} nats/char** ({{ bits }} bits/char) |
| text | {{ text_kind }} |
{% for label, value in facts %}| {{ label }} | {{ value }} |
{% endfor %}{% if corpus.tutorial %}| PyTorch tutorial's best (accent-stripped, 20 GPU epochs) | {{ tutorial }} nats/char |
{% endif %}{% if plot %}
![loss curve](loss.png)
{% endif %}{% if command %}
Reproduce: `{{ command }}`.
{% endif %}{% endif %}
## Training data
{% if corpus %}- Corpus: `{{ corpus.name }}`{% if corpus.dataset_id %} ([dataset](https://huggingface.co/datasets/{{ corpus.dataset_id }})){% endif %}{% if chars %}, {{ chars }} chars after normalization{% endif %}{% if val_pct %}; the first {{ train_pct }} for training, the last {{ val_pct }} for validation, split by position{% endif %}.
{% else %}- Not recorded with these weights.
{% endif %}- Text: {{ text_kind }}.
- Vocabulary ({{ vocab_size }} chars): {{ vocab }}
{% for line in recipe %}{{ line }}
{% endfor %}{% if samples %}
## Samples (temperature 0.8)
{% for seed, text in samples %}
**Seed:** `{{ seed }}`

```text
{{ text }}
```
{% endfor %}{% endif %}
{{ usage }}
## Limits
It learns spelling, punctuation and the rhythm of its text{% if chars %} from {{ chars }} characters{% endif %};
it does not know facts or keep a plot.

## Code
The `charrnn-quijote` package (its README documents it), installed from a checkout of the charrnn
repository: the model, training, generation, scoring, the `charrnn` command and the Gradio demo.
License: MIT.
"""  # noqa: E501 (Markdown: a table row, and a list item, are each one line of the card)
