"""Unicode normalization and the character vocabulary.

The corpus stores accents as combining marks (NFD). We compose them (NFC) so that
'á' is one character, or strip them to reproduce the tutorials' accent-free text.
"""
import unicodedata
from collections import Counter

DEFAULT_SEED = "\n"  # what generation starts from when the user gives no seed


def normalize(text: str, strip_accents: bool = False) -> str:
    """NFC-compose `text`; with strip_accents, drop combining marks (á -> a, ñ -> n, ü -> u)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if strip_accents:
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", text)


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
