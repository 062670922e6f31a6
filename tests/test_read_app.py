"""The "Read a text" and "Look inside" tabs: their endpoints through gradio_client, and both tabs
in a browser."""
import html
import json
import re

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from charrnn import corpus_profile, evaluate, inside
from charrnn.adaptive import Adapt
from charrnn.app import handlers
from conftest import TINY_TEXT


def shown(view: str) -> str:
    """The text an HTML view shows, tags stripped."""
    return html.unescape(re.sub(r"<[^>]+>", "", view))


def test_named_endpoints_take_text_and_adapt_or_unit(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/score"]["parameters"]] == ["text", "adapt"]
    assert [p["parameter_name"] for p in endpoints["/inside"]["parameters"]] == ["text", "unit"]


def test_score_static_agrees_with_the_cli(client, tiny_model_dir, tmp_path, capsys):
    text = TINY_TEXT * 3
    view, totals, summary, words = client.predict(text, False, api_name="/score")
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    # The fixture serves the model in fp32; the CLI's auto reads in bf16 where the CPU has it.
    assert evaluate.main(["--weights", str(tiny_model_dir), "--data", str(tmp_path / "t.txt"), "--device",
                          "cpu", "--precision", "fp32"]) == 0
    assert summary == json.loads(capsys.readouterr().out)
    assert summary["adaptive"] is False and summary["unknown_chars"] == 0
    assert f"{summary['nats_per_char']:.3f} nats/char" in totals
    assert "model card" not in totals
    assert "novel" not in totals
    assert shown(view) == text and "white-space: pre-wrap" in view  # every char shown, line breaks kept
    assert words["headers"] == ["word", "bits"] and len(words["data"]) == 10
    bits = [row[1] for row in words["data"]]
    assert bits == sorted(bits, reverse=True)


def test_score_adapting_says_so(client, tiny_model):
    text = "Sancho dijo, ¿qué gigantes? " * 10
    _, totals, summary, _ = client.predict(text, True, api_name="/score")
    assert summary["adaptive"] is True and summary["adapt"]["lr"] == Adapt().lr
    assert "adapting as it read" in totals
    static = client.predict(text, False, api_name="/score")[2]
    assert summary["nats_per_char"] != static["nats_per_char"] and summary["chars"] == static["chars"]


def test_unknown_characters_are_skipped_and_counted(client):
    text = "En un lugar €€ de la\n–Mancha €"
    view, totals, summary, _ = client.predict(text, False, api_name="/score")
    assert summary["unknown_chars"] == 3 and summary["chars"] == len(text) - 3
    assert "3 characters the model does not know were skipped" in totals
    assert "line-through" in view and shown(view) == text


@pytest.mark.parametrize("text,adapt,message", [
    ("", False, "Paste a text to read first"),
    ("   \n ", False, "Paste a text to read first"),
    ("a" * (handlers.READ_LIMIT + 1), False, "the limit is 20,000"),
    (12345, False, "The text must be a string"),
    (["hola"], False, "The text must be a string"),
    ("€€€ ☃", False, "at least 2 characters the model knows"),
    ("Hola", "yes", "must be true or false"),
])
def test_score_bad_input_gets_a_sentence(client, text, adapt, message):
    with pytest.raises(AppError, match=message):
        client.predict(text, adapt, api_name="/score")


def test_inside_colours_the_text_by_one_unit(client, tiny_model, tiny_model_dir):
    text = "dijo que\n–Así es, señor."
    view, info, ranking = client.predict(text, 40, api_name="/inside")
    assert f"Unit **40** = {inside.unit_name(tiny_model, 40)}" in info
    # 'A' read as 'a', as a seed's
    assert shown(view) == tiny_model.vocab.map_unknown(text)[0] and "rgba(" in view
    assert "'A' → 'a'" in info
    assert ranking["headers"] == ["feature", "unit", "which", "correlation"]
    passages = corpus_profile.load(tiny_model_dir).passages  # ranked on the model's own passages
    features = inside.features("\n\n".join(passages))
    assert {row[0] for row in ranking["data"]} == {inside.FEATURES[f] for f in features}
    assert "ranks units on passages of the model's own corpus" in info


def test_no_request_needs_the_novel(client, monkeypatch):
    """Neither tab reads, finds or downloads the corpus at request time (issue 21 item 3)."""
    def never(*args, **kwargs):
        raise AssertionError("a request looked for the corpus")

    for name in ("find_corpus", "download", "load_text"):
        monkeypatch.setattr(f"charrnn.data.{name}", never)
    _, totals, summary, _ = client.predict(TINY_TEXT, False, api_name="/score")
    assert "nats/char" in totals and summary["chars"] > 100
    _, info, ranking = client.predict(TINY_TEXT, 3, api_name="/inside")
    assert "ranks units on passages of the model's own corpus" in info and ranking["data"]


@pytest.mark.parametrize("text,unit,message", [
    ("", 0, "Paste a text to read first"),
    ("a" * (handlers.READ_LIMIT + 1), 0, "the limit is 20,000"),
    (None, 0, "The text must be a string"),
    ("€€€", 0, "no character the model knows"),
    ("Hola", -1, "whole number from 0 to 127"),
    ("Hola", 128, "whole number from 0 to 127"),
    ("Hola", 2.5, "whole number"),
    ("Hola", "3", "whole number"),
    ("Hola", True, "whole number"),
    ("Hola", 10 ** 400, "whole number"),
])
def test_inside_bad_input_gets_a_sentence(client, text, unit, message):
    with pytest.raises(AppError, match=message):
        client.predict(text, unit, api_name="/inside")


def test_both_tabs_in_a_browser(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url, wait_until="networkidle")
    page.get_by_role("tab", name="Read a text").click()
    page.locator("#read-text textarea").fill("–Mire vuestra merced –respondió Sancho–\nque aquellos no son "
                                             "gigantes.")
    page.locator("#read-adapt input").check()
    page.locator("#read-go").click()
    page.wait_for_function("document.querySelector('#read-totals').innerText.includes('nats/char')",
                           timeout=30_000)
    assert "adapting as it read" in page.locator("#read-totals").inner_text()
    view = page.locator("#read-view")
    assert "que aquellos no son gigantes." in view.inner_text()
    assert view.locator("span").count() > 3  # coloured runs
    assert "\n" in view.inner_text()  # the line break is still a line break on the page

    page.get_by_role("tab", name="Look inside").click()
    page.locator("#inside-unit input").fill("5")
    page.locator("#inside-go").click()
    page.wait_for_function("document.querySelector('#inside-info').innerText.includes('Unit 5')",
                           timeout=30_000)
    assert page.locator("#inside-view span").count() > 3
    assert "position in the word" in page.locator("#inside-ranking").inner_text()
    page.locator("#inside-unit input").fill("99999")
    page.locator("#inside-go").click()
    page.get_by_text("The unit must be a whole number").first.wait_for(timeout=20_000)  # the error toast
    page.close()


# ---------------------------------------------------------------- issue 21 items 3, 13, 14

CJK = ("道可道，非常道。名可名，非常名。無名天地之始；有名萬物之母。故常無欲，以觀其妙；常有欲，以觀其徼。"
       "此兩者，同出而異名，同謂之玄。玄之又玄，眾妙之門。\n") * 12


@pytest.fixture
def spanish_corpus_only(tmp_path, monkeypatch):
    """The default corpus is a Spanish text (as the novel would be, were it found or downloaded)."""
    corpus = tmp_path / "novel.txt"
    corpus.write_text(TINY_TEXT * 20, encoding="utf-8")
    monkeypatch.setattr("charrnn.data.find_corpus", lambda *a, **k: corpus)


def test_a_model_of_another_script_reads_its_own_text(launch_app, tmp_path, spanish_corpus_only):
    from conftest import train_tiny

    model = train_tiny(steps=60, text=CJK)
    url = launch_app(model, str(tmp_path))
    client = Client(url, analytics_enabled=False, verbose=False)
    view, totals, summary, _ = client.predict(CJK[:200], True, api_name="/score")
    assert summary["unknown_chars"] == 0 and summary["chars"] == 200 and "nats/char" in totals
    assert shown(view) == CJK[:200]
    view, info, ranking = client.predict(CJK[:300], 5, api_name="/inside")
    assert shown(view) == CJK[:300] and len(ranking["data"]) == inside.TOP * len(inside.features(CJK[:300]))
    with pytest.raises(AppError, match="no character the model knows"):
        client.predict("En un lugar", 5, api_name="/inside")


def test_the_reference_is_the_models_own_card_score(launch_app, tiny_model, tmp_path):
    from conftest import profile_of

    card = tiny_model.generate_model_card(corpus=profile_of(tiny_model, "tiny.txt", 1.23456, 600))
    (tmp_path / "README.md").write_text(str(card), encoding="utf-8")
    url = launch_app(tiny_model, str(tmp_path))
    _, totals, _, _ = Client(url, analytics_enabled=False,
                             verbose=False).predict(TINY_TEXT, False, api_name="/score")
    assert "the model's validation score from its model card: 1.2346 nats/char on `tiny.txt`" in totals


def test_the_first_known_char_is_shown_plain_and_only_unknown_chars_are_struck(client):
    view = client.predict("€€En un lugar de la Mancha", False, api_name="/score")[0]
    struck = re.findall(r'line-through">([^<]*)</span>', view)
    assert struck == ["€€"]  # the first known char, 'E', has no prediction: plain, not struck out
    assert re.search(r'line-through">€€</span>E', view)


def test_one_surprise_scale_for_both_tabs():
    import math

    from charrnn.app import views
    from charrnn.generate import Output

    for p in (0.9, 0.4, 0.3, 0.1, 0.05, 0.02, 0.001):  # one sampled char of probability p, and a read one
        generated = views.surprise_html(Output(seed="a", sampled="b", probs=[p]))
        read = views.spans_html("ab", views.reading_styles("ab", [None, math.log(p)], {"a", "b"}), "")

        def style_of_b(html: str) -> str:
            found = re.search(r'<span style="([^"]*)">b</span>', html)
            return found.group(1) if found else ""
        assert style_of_b(generated) == style_of_b(read), p
        assert style_of_b(generated) == ("" if p > 0.5 else "background-color: "
                                                            f"{views.COLORS[views.surprise_label(math.log(p))]}")


def test_both_tabs_show_the_same_legend(url):
    import urllib.request

    from charrnn.app import views

    config = urllib.request.urlopen(url + "config", timeout=30).read().decode()
    scale = views.legend_html()
    # the scale's items, in both tabs
    assert config.count(json.dumps(scale.split(": ", 1)[1][:200])[1:-1]) == 2


def test_the_read_tab_maps_unknown_chars_as_the_generator_does(client):
    _, totals, summary, _ = client.predict("—Hola, dijo Sancho.", False, api_name="/score")
    assert summary["unknown_chars"] == 0  # '—' was read as '–', as a seed's would be
    assert "'—' → '–'" in totals
