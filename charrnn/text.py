"""Unicode normalization and the character vocabulary.

The corpus stores accents as combining marks (NFD). We compose them (NFC) so that
'á' is one character, or strip them to reproduce the tutorials' accent-free text.
"""
import unicodedata
from collections import Counter

DEFAULT_SEED = "\n"  # what generation starts from when the user gives no seed

# Look-alikes for chars a vocabulary may lack, tried after case and accent variants.
LOOKALIKES = {"—": "–-", "―": "–-", "‐": "-", "‑": "-", "−": "-", "–": "-",
              "…": ["..."], "„": '"“', "‟": '"“', "″": '"', "`": "'‘", "´": "'’", "′": "'’",
              "“": '"', "”": '"', "‘": "'", "’": "'", "«": '"', "»": '"', '"': "“«", "'": "’",
              "\t": " ", "\u00a0": " ", "\u2009": " ", "\u202f": " "}


def normalize(text: str, strip_accents: bool = False) -> str:
    """NFC-compose `text`; with strip_accents, drop combining marks (á -> a, ñ -> n, ü -> u)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", text)


# A piece of text can end halfway through what normalize() must see whole: a base letter whose
# combining accent comes in the next piece, or a "\r" whose "\n" does. An ASCII character never
# composes with what precedes it, so cutting just before one is safe (unless it is the "\n" of a
# "\r\n"); text with no ASCII for this long is cut before its last starter instead.
MAX_HELD_CHARS = 1 << 20


def safe_cut(text: str) -> int:
    """An index i such that normalize(text[:i]) + normalize(text[i:] + more) == normalize(text + more)."""
    for i in range(len(text) - 1, max(-1, len(text) - 4096), -1):
        if text[i] < "\x80":
            return i - 1 if text[i] == "\n" and i > 0 and text[i - 1] == "\r" else i
    if len(text) < MAX_HELD_CHARS:
        return 0  # hold it all until an ASCII character comes
    return max((i for i in range(len(text) - 1, len(text) - 4096, -1) if not unicodedata.combining(text[i])),
               default=len(text))


def normalize_pieces(pieces, strip_accents: bool = False):
    """normalize() over text that arrives in pieces (a file loaded in blocks, dataset rows): yields
    normalized pieces whose concatenation is normalize("".join(pieces)), without ever holding it all."""
    held = ""
    for piece in pieces:
        text = held + piece
        cut = safe_cut(text)
        held = text[cut:]
        if cut:
            yield normalize(text[:cut], strip_accents)
    if held:
        yield normalize(held, strip_accents)


def variants(c: str) -> list[str]:
    """Replacements for a char a vocabulary lacks, best first: its compatibility form ('ﬁ' -> 'fi',
    'Ａ' -> 'A'), other case, no accent, look-alikes."""
    bare = "".join(x for x in unicodedata.normalize("NFD", c) if not unicodedata.combining(x))
    out = [unicodedata.normalize("NFKC", c), c.lower(), c.upper(), bare, bare.lower(), bare.upper()]
    return [v for v in out if v != c] + list(LOOKALIKES.get(c, ""))


class UnknownCharsError(ValueError):
    """Raised by Vocab.encode when text holds characters the vocabulary lacks."""

    def __init__(self, unknown: Counter):
        self.unknown = unknown
        shown = ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common(10))
        more = "" if len(unknown) <= 10 else f" and {len(unknown) - 10} more"
        super().__init__(f"{sum(unknown.values())} characters are not in the vocabulary: {shown}{more}")


class Vocab:
    """Maps characters to ids and back. Text is normalized the same way on the way in."""

    def __init__(self, chars: str, strip_accents: bool = False):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        self.chars = chars
        self.strip_accents = strip_accents
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str, strip_accents: bool = False) -> "Vocab":
        return cls("".join(sorted(set(normalize(text, strip_accents)))), strip_accents)

    def __len__(self) -> int:
        return len(self.chars)

    def normalize(self, text: str) -> str:
        return normalize(text, self.strip_accents)

    def map_unknown(self, text: str) -> tuple[str, dict[str, str]]:
        """`text` NFC-normalized, each char the vocabulary lacks replaced by its closest known form
        (variants(): 'Ñ' -> 'ñ', 'á' -> 'a' for an accent-free vocabulary, '—' -> '–'); a char with
        none is kept as it is. Also returns the replacements made, {char: replacement}. The one
        rule for generation seeds and for texts to read, so both treat a char the same way."""
        subs: dict[str, str] = {}
        out = []
        for c in normalize(text):  # NFC only: accents are mapped here, where the caller can report them
            if c not in self.stoi and c not in subs:
                subs[c] = next((v for v in variants(c) if v and all(x in self.stoi for x in v)), c)
            out.append(subs.get(c, c) if c not in self.stoi else c)
        return "".join(out), {c: r for c, r in subs.items() if r != c}

    def unknown(self, text: str) -> Counter:
        """Characters of the normalized text that have no id, with their counts."""
        return Counter(c for c in self.normalize(text) if c not in self.stoi)

    def encode(self, text: str, errors: str = "strict") -> list[int]:
        """Normalize and encode. errors='strict' raises UnknownCharsError, 'drop' skips them
        (callers that drop should report `unknown(text)` to the user)."""
        if errors not in ("strict", "drop"):
            raise ValueError(f"errors must be 'strict' or 'drop', not {errors!r}")
        text = self.normalize(text)
        if errors == "strict":
            unknown = Counter(c for c in text if c not in self.stoi)
            if unknown:
                raise UnknownCharsError(unknown)
        return [self.stoi[c] for c in text if c in self.stoi]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)
