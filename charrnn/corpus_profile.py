"""What a page needs to speak of a model's own corpus, kept beside its weights as corpus.json.

A run records the corpus's name, title and description, its language, a few seed prompts and
passages taken from its validation split (text the model never trained on, within its
vocabulary), and the validation score with exactly what was read. The card, the app, Look
inside and the Space read this file, so none of them assumes a particular text; it is a few KB
and travels with config.json to the Hub.

The project's own corpus (el_quijote.txt, known by its content hash) comes with its page texts
in KNOWN, as a user's `--title`, `--description` and `--language` would: the same path, filled in.
"""
import json
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .text import normalize

PROFILE_FILE = "corpus.json"
UNKNOWN = "unknown"  # the language, when it was neither given nor detected with confidence
SEEDS = 5
PASSAGES = 3
SEED_CHARS = (12, 40)  # a seed ends at a word boundary within this many chars
PASSAGE_CHARS = (200, 600)  # a passage ends at a sentence end within this many chars
UNSPACED = dict(seed=(6, 16), passage=(80, 240))  # for scripts written without spaces (CJK): denser chars
SAMPLE_CHARS = 200_000  # of the validation split, read to pick seeds and passages and detect the language
DETECT_CHARS = 20_000
MIN_CONFIDENCE = 0.8  # py3langid's normalized probability; below it the language is "unknown"
LANGUAGE_CODE = re.compile(r"^(?:[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*|unknown)$")
LETTER = re.compile(r"[^\W\d_]")
# Where a sentence or line begins: after . ! ? … (and a closing quote) and a space, after a line
# break, or after a CJK full stop, question or exclamation mark.
SENTENCE_START = re.compile(r"(?:[.!?…][\"'”’»)]*\s+|\n\s*|[。！？]\s*)(?=\S)")
SENTENCE_END = re.compile(r"[.!?…][\"'”’»)]*(?=\s|$)|[。！？][”’」』]?")
OPENERS = "\"'“‘«(¿¡–-—[「『"  # a seed may begin with these as well as with a letter


@dataclass(frozen=True)
class Validation:
    """The validation score as training measured it: `chars` chars read from the start of the
    validation split (the last `val_frac` of the text, by position), which holds `split_chars`."""
    nats_per_char: float
    chars: int
    split_chars: int
    val_frac: float = 0.2

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / math.log(2)

    @property
    def exact(self) -> bool:
        return self.chars == self.split_chars

    def describe(self) -> str:
        """What was read, in words: 'last 20%', or 'first 500 chars of the last 20%' when an
        evaluation bound (--max-eval-chars) kept it to the start of the split."""
        split = f"last {self.val_frac:.0%}"
        return split if self.exact else f"first {self.chars:,} chars of the {split}"


@dataclass(frozen=True)
class CorpusProfile:
    """A corpus as a page tells it. `source` is the --data path or --dataset id as the user gave it."""
    name: str  # e.g. "release_notes.txt", "novelas/ (3 .txt files)", "someone/cartas, column 'text'"
    title: str  # the page's title, e.g. "Don Quijote"
    description: str = ""  # one line, Markdown
    language: str = UNKNOWN  # an ISO 639 code, or "unknown"
    seeds: tuple[str, ...] = ()  # prompts to start generating from
    passages: tuple[str, ...] = ()  # texts to read and look inside
    validation: Validation | None = None
    source: str | None = None
    dataset_id: str | None = None  # the Hub dataset id, when the text came from the Hub
    chars: int | None = None  # after normalization
    tags: tuple[str, ...] = ()  # extra Hub tags, e.g. "spanish"
    tutorial: bool = False  # the PyTorch char-RNN tutorial's corpus: only then is its loss a yardstick
    extra: dict = field(default_factory=dict)  # fields of a later version, kept as they are

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "extra"}
        lists = {k: list(getattr(self, k)) for k in ("seeds", "passages", "tags")}
        return {**self.extra, **d, **lists}

    @classmethod
    def from_dict(cls, d: dict) -> "CorpusProfile":
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        v = d.get("validation")
        values = {k: d[k] for k in known if k in d}
        values.update(seeds=tuple(d.get("seeds", ())), passages=tuple(d.get("passages", ())),
                      tags=tuple(d.get("tags", ())), validation=Validation(**v) if v else None)
        return cls(**values, extra={k: d[k] for k in d if k not in known})

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / PROFILE_FILE
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @property
    def language_name(self) -> str | None:
        """'en', 'el', ...: None when unknown (the card then leaves `language` out)."""
        return None if self.language == UNKNOWN else self.language


def load(folder: str | Path) -> CorpusProfile | None:
    """The profile saved in `folder`, or None when there is none or it cannot be read (weights
    from before profiles existed, a damaged file): a page then says what it can without one."""
    path = Path(folder) / PROFILE_FILE
    try:
        return CorpusProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def unrecorded() -> CorpusProfile:
    """For weights without a corpus.json: nothing claimed about the text."""
    return CorpusProfile(name="an unrecorded corpus", title="a character-level model",
                         description="a text not recorded with these weights")


# ---- from a corpus ------------------------------------------------------------------------------

# The project's own corpus, by content hash (data.CORPUS_SHA256): its page texts, as if given with
# --title and friends. Seeds and passages are the app's since its first version: the first passage
# is from the novel's last part (validation text), the second its opening line, which readers know.
KNOWN = {
    "a82846e648e0f1f7faf71c4224c98dd89ec2cfa7d03275c060b8dea155b08048": dict(
        title="Don Quijote",
        description="Cervantes' *El ingenioso hidalgo don Quijote de la Mancha* (Part I), "
                    "the PyTorch char-RNN tutorial's `el_quijote.txt`",
        language="es", tags=("spanish", "don-quijote"), tutorial=True,
        seeds=("En un lugar de la Mancha, de cuyo nombre no quiero acordarme,",
               "–Mire vuestra merced –respondió Sancho–",
               "En esto, descubrieron treinta o cuarenta molinos de viento",
               "Dijo don Quijote a su escudero:",
               "¿Qué gigantes? –dijo Sancho Panza."),
        passages=("-¿Qué es lo que dices, niña? Mira que dicen que el que canta es un mozo de mulas.\n"
                  "-No es sino señor de lugares -respondió Clara-, y el que le tiene en mi alma con tanta "
                  "seguridad, que si él no quiere dejalle, no le será quitado eternamente.",
                  "En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que "
                  "vivía un hidalgo de los de lanza en astillero, adarga antigua, rocín flaco y galgo "
                  "corredor.")),
}


def from_corpus(val_text: str, vocab: str, *, name: str, digest: str | None = None, source: str | None = None,
                dataset_id: str | None = None, chars: int | None = None, title: str | None = None,
                description: str | None = None, language: str | None = None, log=print) -> CorpusProfile:
    """The profile of a corpus from the start of its validation split (`val_text`, normalized as
    the model reads it). Given values win; then KNOWN's for this content; then what the text says."""
    known = dict(KNOWN.get(digest, {}))
    given = {k: v for k, v in dict(title=title, description=description, language=language).items() if v}
    values = {**known, **given}
    if "language" not in values:
        values["language"] = detect_language(val_text, log)
    seeds = within(vocab, values.pop("seeds", None) or pick_seeds(val_text))
    passages = within(vocab, values.pop("passages", None) or pick_passages(val_text))
    values.setdefault("title", title_of(source or name))
    values.setdefault("description", f"the text of `{name}`")
    return CorpusProfile(name=name, seeds=seeds, passages=passages, source=source, dataset_id=dataset_id,
                         chars=chars, **values)


def with_validation(profile: CorpusProfile, nats_per_char: float, chars: int, split_chars: int,
                    val_frac: float) -> CorpusProfile:
    score = Validation(round(float(nats_per_char), 6), int(chars), int(split_chars), float(val_frac))
    return replace(profile, validation=score)


def title_of(source: str) -> str:
    """A title from a path or dataset id: its last part without the extension."""
    last = str(source).rstrip("/").split(",")[0].split(" (")[0].rstrip("/").split("/")[-1]
    return Path(last).stem or last or "a character-level model"


def within(vocab: str, texts) -> tuple[str, ...]:
    """The texts whose every char (normalized) the vocabulary has, normalized; others are dropped."""
    known = set(vocab)
    kept = (normalize(t) for t in texts)
    return tuple(t for t in kept if t.strip() and set(t) <= known)


def detect_language(text: str, log=print) -> str:
    """The text's language as an ISO 639 code, by py3langid (the [train] extra), or "unknown"
    when it is not installed or not confident."""
    try:  # imported here: an optional extra, and its model takes ~0.6 s to load
        from py3langid.langid import MODEL_FILE, LanguageIdentifier  # noqa: PLC0415
    except ImportError:
        log("the language was not detected (pip install py3langid, or pass --language CODE): 'unknown'")
        return UNKNOWN
    sample = text[:DETECT_CHARS]
    if sum(1 for c in sample if LETTER.match(c)) < 20:
        return UNKNOWN
    code, confidence = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True).classify(sample)
    return code if confidence >= MIN_CONFIDENCE and code != "zxx" else UNKNOWN


def _starts(text: str) -> list[int]:
    """Where sentences and lines begin in `text` (the text's first char counts when it is a letter)."""
    starts = [m.end() for m in SENTENCE_START.finditer(text)]
    return ([0] if text[:1] and LETTER.match(text[0]) else []) + starts


def _spread(items: list, n: int) -> list:
    """n items spread evenly over the list (all of them when there are fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)] if n > 1 else items[:1]


def _unspaced(text: str) -> bool:
    """Written without spaces between words (Chinese, Japanese): fewer chars make a seed or passage."""
    return text.count(" ") < len(text) / 50


def _seed_at(text: str, i: int, limits: tuple[int, int]) -> str | None:
    lo, hi = limits
    piece = text[i: i + hi].split("\n")[0]
    if len(piece) == hi and " " in piece[lo:]:  # spaced text: end at the last word boundary
        piece = piece[: piece.rindex(" ")]
    piece = piece.rstrip()
    starts_well = piece[:1] in OPENERS or bool(LETTER.match(piece[:1]))
    letters = sum(bool(LETTER.match(c)) for c in piece)
    return piece if starts_well and len(piece) >= lo and letters >= 3 else None


def pick_seeds(text: str, n: int = SEEDS) -> list[str]:
    """Up to n prompts: sentence and line beginnings spread over the text, cut at a word boundary."""
    limits = UNSPACED["seed"] if _unspaced(text) else SEED_CHARS
    candidates = list(dict.fromkeys(s for i in _starts(text) if (s := _seed_at(text, i, limits))))
    return _spread(candidates, n)


def _passage_at(text: str, i: int, limits: tuple[int, int]) -> str | None:
    lo, hi = limits
    piece = text[i: i + hi]
    ends = [m.end() for m in SENTENCE_END.finditer(piece) if m.end() >= lo]
    if ends:
        piece = piece[: ends[-1]]
    elif len(piece) == hi and " " in piece[lo:]:
        piece = piece[: piece.rindex(" ")]
    piece = piece.strip()
    return piece if len(piece) >= min(lo, len(text) // 2) and LETTER.search(piece) else None


def pick_passages(text: str, n: int = PASSAGES) -> list[str]:
    """Up to n passages of a few hundred chars, each from a sentence beginning to a sentence end,
    spread over the text and not overlapping."""
    limits = UNSPACED["passage"] if _unspaced(text) else PASSAGE_CHARS
    out, last_end = [], -1
    for i in _spread(_starts(text), n * 4):
        if i >= last_end and (p := _passage_at(text, i, limits)):
            out.append(p)
            last_end = i + len(p)
    return _spread(out, n)
