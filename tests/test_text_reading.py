"""charrnn.text_reading: a pasted text's per-char scores at their places, unknown chars skipped."""

import pytest

from charrnn.text_reading import read


def test_read_aligns_logprobs_with_the_text_and_skips_unknown_chars(tiny_model, one_thread):
    text = "En un lugar € de la\r\nMancha"
    reading = read(tiny_model, text)
    assert reading.text == "En un lugar € de la\nMancha"  # normalized as the model reads
    assert len(reading.logprobs) == len(reading.text) and reading.unknown == {"€": 1}
    assert reading.logprobs[0] is None and reading.logprobs[reading.text.index("€")] is None
    known = [lp for lp in reading.logprobs if lp is not None]
    assert known == pytest.approx(reading.score.logprobs.tolist())
    assert reading.score.chars == len(reading.text) - 1
    words = reading.surprising_words(3)
    assert len(words) == 3 and words[0][1] >= words[1][1] >= words[2][1] > 0
    assert {w for w, _ in words} <= {"En", "un", "lugar", "de", "la", "Mancha"}
    with pytest.raises(ValueError, match="at least 2 characters"):
        read(tiny_model, "€€ x")
