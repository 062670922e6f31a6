import random
import unicodedata

import pytest

from charrnn.text import UnknownCharsError, Vocab, normalize, normalize_pieces

SPANISH = "¿Qué dices, Sancho? ¡Dulcinea del Toboso! Año de pingüino, ñandú, allá."


def test_normalize_composes_the_corpus_combining_marks():
    nfd = unicodedata.normalize("NFD", SPANISH)
    assert len(nfd) > len(SPANISH)  # the corpus stores accents as combining marks
    assert normalize(nfd) == SPANISH
    assert normalize("a\r\nb\rc") == "a\nb\nc"


def test_strip_accents_keeps_inverted_marks_and_drops_accents():
    stripped = normalize(SPANISH, strip_accents=True)
    assert stripped == "¿Que dices, Sancho? ¡Dulcinea del Toboso! Ano de pinguino, nandu, alla."


def test_round_trip_with_accents_enye_and_inverted_marks():
    vocab = Vocab.from_text(SPANISH)
    assert vocab.decode(vocab.encode(SPANISH)) == SPANISH
    assert {"ñ", "á", "¿", "¡", "ü"} <= set(vocab.chars)
    # NFD input encodes to the same ids as NFC input
    assert vocab.encode(unicodedata.normalize("NFD", SPANISH)) == vocab.encode(SPANISH)


def test_unknown_chars_are_reported_not_silently_dropped():
    vocab = Vocab.from_text(SPANISH)
    with pytest.raises(UnknownCharsError) as err:
        vocab.encode("Qué €s 😀 €")
    assert err.value.unknown == {"€": 2, "😀": 1}
    assert "€" in str(err.value) and "3 characters" in str(err.value)
    assert vocab.unknown("Qué €s") == {"€": 1}
    assert vocab.decode(vocab.encode("Qué €s", errors="drop")) == "Qué s"
    with pytest.raises(ValueError):
        vocab.encode("x", errors="ignore")


def test_accent_free_vocab_maps_accented_input():
    vocab = Vocab.from_text(SPANISH, strip_accents=True)
    assert "é" not in vocab.chars and "ñ" not in vocab.chars
    assert vocab.decode(vocab.encode("Qué año")) == "Que ano"


def test_duplicate_vocab_chars_rejected():
    with pytest.raises(ValueError):
        Vocab("aab")


@pytest.mark.parametrize("strip_accents", [False, True])
def test_normalize_pieces_equals_normalizing_the_whole_text(strip_accents):
    """Pieces cut anywhere (between a letter and its accent, inside a \r\n) normalize as the whole."""
    parts = ["a", "n", "e", " ", "\u0301", "\u0303", "\u0308", "\r", "\n", "\r\n", "é", "¿", "中", "x"]
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        assert "".join(normalize_pieces(pieces, strip_accents)) == normalize(text, strip_accents), pieces
    # the naive way (normalize each piece) gets exactly these wrong
    assert normalize("a") + normalize("\u0301") != normalize("a\u0301")
    assert "".join(normalize_pieces(["a", "\u0301"])) == "á"
    assert "".join(normalize_pieces(["x\r", "\ny"])) == "x\ny"
