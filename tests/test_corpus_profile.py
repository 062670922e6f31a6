"""corpus_profile: what a page says of a model's own corpus (corpus.json beside the weights), and a
card for a corpus in another language or script that says nothing of the novel."""
import json

import pytest
from huggingface_hub import ModelCard

from charrnn import CharRNN, load_model
from charrnn import corpus_profile as cp
from charrnn.config import TrainConfig
from charrnn.data import CORPUS_SHA256
from conftest import ROOT

NOVEL = ["Quijote", "Cervantes", "Spanish", "Mancha", "spanish", "don-quijote"]
ENGLISH = ("Release 2.3 fixes the crash when saving files. It also adds a dark theme to the editor.\n"
           "The settings page now loads faster than before. Thanks to everyone who reported bugs!\n"
           "Version 2.2 brought \"smart\" quotes (and brackets) to the editor. Many users asked for it.\n")
GREEK = ("Καλημέρα σας, τι κάνετε σήμερα; Ο καιρός είναι ωραίος και η θάλασσα ήσυχη. "
         "Πήγαμε στο λιμάνι με τους φίλους μας το πρωί. Τα παιδιά έπαιζαν στην άμμο ως το βράδυ.\n")
CHINESE = "我们今天去公园散步，天气很好。他说：“明天会下雨吗？”我不知道。孩子们在草地上玩耍，笑声不断。\n"


def profile_from(text: str, **given) -> cp.CorpusProfile:
    return cp.from_corpus(text, "".join(sorted(set(text))), name="t.txt", log=lambda *a: None, **given)


def test_seeds_and_passages_come_from_the_text_and_begin_sentences():
    p = profile_from(ENGLISH * 10)
    assert p.seeds and p.passages and p.language == "en"
    for s in p.seeds + p.passages:
        assert s in ENGLISH * 10 and s[0].isupper()
    assert all(len(s) <= cp.SEED_CHARS[1] and "\n" not in s for s in p.seeds)
    assert all(p.endswith((".", "!")) for p in p.passages)  # each ends at a sentence end


@pytest.mark.parametrize("text, language", [(GREEK, "el"), (CHINESE, "zh")])
def test_another_script_gets_its_language_and_a_card_without_the_novel(text, language):
    p = profile_from(text * 20)
    assert p.language == language and p.seeds and p.passages
    model = CharRNN("".join(sorted(set(text))), hidden_size=16, embed_dim=8, num_layers=1)
    samples = [(seed, model.generate(seed, length=40, sampling_seed=0)) for seed in p.seeds[:3]]
    card = str(model.generate_model_card(repo_id="runs/mine",
                                         corpus=cp.with_validation(p, 2.5, 100, 100, 0.2), samples=samples))
    assert ModelCard(card).data.language == language
    assert not [w for w in NOVEL if w in card] and "language: es" not in card
    assert f"**Seed:** `{p.seeds[0]!r}`" in card and json.dumps(p.seeds[0], ensure_ascii=False) in card


def test_given_values_win_and_a_language_that_is_not_sure_is_unknown():
    p = profile_from(ENGLISH * 10, title="Release notes", description="ten releases", language="en-GB")
    assert (p.title, p.description, p.language) == ("Release notes", "ten releases", "en-GB")
    assert profile_from("12 34 56 78 ... --- ;;; 90 12 34 56 78 ... --- ;;; " * 20).language == cp.UNKNOWN
    with pytest.raises(ValueError, match="language must be an ISO 639 code"):
        TrainConfig(language="English").validate()


def test_seeds_outside_the_vocabulary_are_dropped():
    assert cp.within("abc ", ["abc", "abd", "  ", "cab a"]) == ("abc", "cab a")


def test_profile_round_trips_and_a_damaged_one_is_absent(tmp_path):
    p = cp.with_validation(profile_from(ENGLISH * 10), 1.5, 300, 300, 0.2)
    p.save(tmp_path)
    assert cp.load(tmp_path) == p
    data = json.loads((tmp_path / cp.PROFILE_FILE).read_text(encoding="utf-8"))
    (tmp_path / cp.PROFILE_FILE).write_text(json.dumps({**data, "later": 1}), encoding="utf-8")
    assert cp.load(tmp_path).to_dict()["later"] == 1  # a later version's field survives a rewrite
    (tmp_path / cp.PROFILE_FILE).write_text("{not json", encoding="utf-8")
    assert cp.load(tmp_path) is None and cp.load(tmp_path / "nowhere") is None


def test_the_projects_corpus_keeps_its_page_texts_through_the_same_path():
    assert CORPUS_SHA256 in cp.KNOWN  # the two copies of the hash agree
    shipped = load_model(ROOT / "weights")
    p = cp.from_corpus("", shipped.vocab.chars, name="el_quijote.txt", digest=CORPUS_SHA256)
    assert (p.title, p.language, p.tutorial) == ("Don Quijote", "es", True)
    assert p.seeds == cp.KNOWN[CORPUS_SHA256]["seeds"] and p.passages == cp.KNOWN[CORPUS_SHA256]["passages"]
    # the shipped weights carry such a file, written by from_corpus
    shipped_profile = cp.load(ROOT / "weights")
    assert (shipped_profile.title, shipped_profile.seeds,
            shipped_profile.passages) == (p.title, p.seeds, p.passages)
    assert round(shipped_profile.validation.nats_per_char, 4) == 1.1942 and shipped_profile.validation.exact
