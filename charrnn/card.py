"""The model card: one template for `save_pretrained`, `push_to_hub`, train.py and the Space.

CharRNN hands CARD_TEMPLATE to huggingface_hub's mixin (`model_card_template`) and renders it
through `ModelCard.from_template` with `card_kwargs(...)`: the YAML (license, language, tags,
datasets, model-index with the validation nats/char and bits/char) and the text come from the
same facts. `read_metrics` gives the model-index back as data, for the app's About panel.
"""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

CODE_URL = "https://pypi.org/project/charrnn-quijote/"  # the package: code, README, the `charrnn` command
LICENSE = "mit"
TAGS = ["char-rnn", "text-generation"]
TUTORIAL_NATS = 1.2446  # the PyTorch char-RNN tutorial's best validation loss, accent-stripped


@dataclass(frozen=True)
class Corpus:
    """What a model was trained on, as the card tells it."""
    name: str  # e.g. the file name
    chars: int | None = None  # after normalization
    val_frac: float = 0.2  # the last val_frac of the text, by position, is the validation split
    description: str = ""  # one line, Markdown
    language: str = "es"
    dataset_id: str | None = None  # the Hub dataset id, when the text came from the Hub
    default: bool = False  # the tutorial's corpus: only then does the card compare with the tutorial
    eval_chars: int | None = None  # the validation chars the score read (its first ones) when not the whole split


def validation_read(corpus: Corpus) -> str:
    """What the validation loss read, in words: the whole split, or its first eval_chars."""
    split = f"last {corpus.val_frac:.0%}"
    return split if corpus.eval_chars is None else f"first {corpus.eval_chars:,} chars of the {split}"


def default_corpus(chars: int | None = None, val_frac: float = 0.2) -> Corpus:
    return Corpus("el_quijote.txt", chars, val_frac, default=True,
                  description="Cervantes' *El ingenioso hidalgo don Quijote de la Mancha* (Part I), "
                              "the PyTorch char-RNN tutorial's `el_quijote.txt`")


def card_data(model, corpus: Corpus | None, val_nats: float | None):
    """The YAML front matter, with a model-index when the validation loss is known."""
    from huggingface_hub import EvalResult, ModelCardData

    tags = TAGS + [model.cell] + (["spanish", "don-quijote"] if corpus and corpus.default else [])
    dataset = corpus and (corpus.dataset_id or corpus.name)
    results = None
    if val_nats is not None and corpus is not None:
        split = f"validation ({validation_read(corpus)}, by position)"
        results = [EvalResult(task_type="text-generation", task_name="Character-level language modeling",
                              dataset_type=dataset, dataset_name=corpus.name, dataset_split=split,
                              metric_type=kind, metric_name=name, metric_value=round(value, 4))
                   for kind, name, value in [("nats_per_char", "Validation loss (nats/char)", val_nats),
                                             ("bits_per_char", "Bits per character", val_nats / math.log(2))]]
    return ModelCardData(language=corpus.language if corpus else "es", license=LICENSE, library_name="charrnn",
                         tags=tags, datasets=[dataset] if dataset else None, pipeline_tag="text-generation",
                         model_name=title(model, corpus) if results else None, eval_results=results)


def title(model, corpus: Corpus | None) -> str:
    rnn = model.rnn
    return f"charrnn {model.cell.upper()} {rnn.num_layers}x{rnn.hidden_size}" + (f" ({corpus.name})" if corpus else "")


def card_kwargs(model, repo_id: str | None = None, corpus: Corpus | None = None, val_nats: float | None = None,
                facts: list[tuple[str, str]] | None = None, recipe: list[str] | None = None,
                samples: list[tuple[str, str]] | None = None, command: str | None = None,
                plot: bool = False) -> dict:
    """Everything CARD_TEMPLATE renders. `repo_id` is where the card's code loads the model from
    (a Hub repo id or a folder); `facts` are (label, value) rows for the metrics table, e.g. the
    training time; `recipe` Markdown lines on how it was trained; `samples` (seed, continuation)."""
    rnn = model.rnn
    return dict(
        card_data=card_data(model, corpus, val_nats), title=title(model, None), cell=model.cell.upper(),
        layers=rnn.num_layers, hidden=rnn.hidden_size, embed=model.embed.embedding_dim,
        params=f"{model.num_params():,}", vocab_size=len(model.vocab),
        vocab=json.dumps(model.vocab.chars, ensure_ascii=False),
        text_kind="accent-stripped (the tutorials' setting)" if model.vocab.strip_accents
        else "NFC, accents and other marks kept",
        corpus=corpus, chars=f"{corpus.chars:,}" if corpus and corpus.chars else None,
        val_read=validation_read(corpus) if corpus else None,
        val_pct=f"{corpus.val_frac:.0%}" if corpus else None, train_pct=f"{1 - corpus.val_frac:.0%}" if corpus else None,
        tutorial=TUTORIAL_NATS,
        nats=f"{val_nats:.4f}" if val_nats is not None else None,
        bits=f"{val_nats / math.log(2):.4f}" if val_nats is not None else None,
        facts=facts or [], recipe=recipe or [], command=command, plot=plot,
        samples=[(repr(seed), seed + text) for seed, text in samples or []],
        usage=usage(repo_id or "OWNER/NAME", None if corpus is None or corpus.default else corpus.name),
        repo_url=CODE_URL, docs_url=CODE_URL)


def usage(repo_id: str, data: str | None = None) -> str:
    """The card's "Use" section for a model loaded from `repo_id`; `data` is the text file to
    score it on, when it is not the default corpus (which charrnn.evaluate finds by itself)."""
    return f"""## Use
```bash
pip install charrnn-quijote
```
```python
from charrnn import CharRNN
model = CharRNN.from_pretrained("{repo_id}")
print(model.generate("En un lugar de la Mancha", length=300, temperature=0.8))
```
From a terminal: `charrnn sample --weights {repo_id} --seed-text "En un lugar de la Mancha"`; score it:
`charrnn evaluate --weights {repo_id}{f" --data {data}" if data else ""} --split val`; in a browser: `python app.py --model {repo_id}`.
"""


def retarget(card_text: str, repo_id: str) -> str:
    """The card with its "Use" section rewritten to load from `repo_id` (what `push` uploads)."""
    def rewrite(section: re.Match) -> str:
        data = re.search(r"charrnn evaluate --weights \S+ --data (\S+) ", section.group(0))
        return usage(repo_id, data and data.group(1)) + "\n"

    return re.sub(r"^## Use\n.*?(?=^## |\Z)", rewrite, card_text, count=1, flags=re.M | re.S)


@dataclass(frozen=True)
class Metrics:
    nats_per_char: float
    bits_per_char: float
    dataset: str
    split: str


def read_metrics(card_path: str | Path) -> Metrics | None:
    """The validation loss from a card's model-index, as data; None when the card has none."""
    from huggingface_hub import ModelCard

    try:
        results = ModelCard.load(card_path).data.eval_results or []
    except Exception:  # not a card, unreadable YAML: no metrics to show
        return None
    values = {r.metric_type: r for r in results}
    if "nats_per_char" not in values:
        return None
    nats = values["nats_per_char"]
    bits = values["bits_per_char"].metric_value if "bits_per_char" in values else nats.metric_value / math.log(2)
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
{% endfor %}{% if corpus.default %}| PyTorch tutorial's best (accent-stripped, 20 GPU epochs) | {{ tutorial }} nats/char |
{% endif %}{% if plot %}
![loss curve](loss.png)
{% endif %}{% if command %}
Reproduce: `{{ command }}`.
{% endif %}{% endif %}
## Training data
{% if corpus %}- Corpus: `{{ corpus.name }}`{% if corpus.dataset_id %} ([dataset](https://huggingface.co/datasets/{{ corpus.dataset_id }})){% endif %}{% if chars %}, {{ chars }} chars after normalization{% endif %}; the first {{ train_pct }} for training, the last {{ val_pct }} for validation, split by position.
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
it does not know facts or keep a plot.{% if corpus and corpus.default %} Its Spanish is Cervantes', of the early 17th century.{% endif %}

## Code
[charrnn-quijote]({{ repo_url }}) (docs: [README]({{ docs_url }})): the model, training, generation,
scoring, the `charrnn` command and the Gradio demo. License: MIT.
"""
