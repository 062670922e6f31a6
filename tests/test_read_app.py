"""The "Read a text" and "Look inside" tabs: their endpoints through gradio_client, and both tabs in a browser."""
import html
import json
import re

import pytest
from gradio_client.exceptions import AppError

from charrnn.app import handlers
from charrnn import evaluate, inside
from conftest import TINY_TEXT


def shown(view: str) -> str:
    """The text an HTML view shows, tags stripped."""
    return html.unescape(re.sub(r"<[^>]+>", "", view))


def test_named_endpoints_take_text_and_adapt_or_cell(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/score"]["parameters"]] == ["text", "adapt"]
    assert [p["parameter_name"] for p in endpoints["/inside"]["parameters"]] == ["text", "cell"]


def test_score_static_agrees_with_the_cli(client, tiny_model_dir, tmp_path, capsys):
    text = TINY_TEXT * 3
    view, totals, summary, words = client.predict(text, False, api_name="/score")
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert evaluate.main(["--weights", str(tiny_model_dir), "--data", str(tmp_path / "t.txt"), "--device", "cpu"]) == 0
    assert summary == json.loads(capsys.readouterr().out)
    assert summary["adaptive"] is False and summary["unknown_chars"] == 0
    assert f"{summary['nats_per_char']:.3f} nats/char" in totals and "novel's own" in totals
    assert shown(view) == text and "white-space: pre-wrap" in view  # every char shown, line breaks kept
    assert words["headers"] == ["word", "bits"] and len(words["data"]) == 10
    bits = [row[1] for row in words["data"]]
    assert bits == sorted(bits, reverse=True)


def test_score_adapting_says_so(client, tiny_model):
    text = "Sancho dijo, ¿qué gigantes? " * 10
    _, totals, summary, _ = client.predict(text, True, api_name="/score")
    assert summary["adaptive"] is True and summary["adapt"]["lr"] == evaluate.Adapt().lr
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


def test_inside_colours_the_text_by_one_cell(client, tiny_model):
    text = "dijo que\n–Así es, señor."
    view, info, ranking = client.predict(text, 40, api_name="/inside")
    assert f"Cell **40** = {inside.cell_name(tiny_model, 40)}" in info
    assert shown(view) == text and "rgba(" in view
    assert ranking["headers"] == ["feature", "cell", "which", "correlation"]
    assert {row[0] for row in ranking["data"]} == set(inside.FEATURES.values())


def test_without_a_copy_of_the_novel_both_tabs_still_answer(client, monkeypatch):
    from charrnn.data import DataError

    def offline():
        raise DataError("could not download the corpus")

    monkeypatch.setattr("charrnn.data.find_corpus", offline)
    inside.novel_ranking.cache_clear()
    evaluate.novel_nats_per_char.cache_clear()
    _, totals, summary, _ = client.predict(TINY_TEXT, False, api_name="/score")
    assert "nats/char" in totals and "novel's own" not in totals
    _, info, ranking = client.predict(TINY_TEXT, 3, api_name="/inside")
    assert "ranks cells on this text" in info and len(ranking["data"]) == inside.TOP * len(inside.FEATURES)
    inside.novel_ranking.cache_clear()
    evaluate.novel_nats_per_char.cache_clear()


@pytest.mark.parametrize("text,cell,message", [
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
def test_inside_bad_input_gets_a_sentence(client, text, cell, message):
    with pytest.raises(AppError, match=message):
        client.predict(text, cell, api_name="/inside")


def test_both_tabs_in_a_browser(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url, wait_until="networkidle")
    page.get_by_role("tab", name="Read a text").click()
    page.locator("#read-text textarea").fill("–Mire vuestra merced –respondió Sancho–\nque aquellos no son gigantes.")
    page.locator("#read-adapt input").check()
    page.locator("#read-go").click()
    page.wait_for_function("document.querySelector('#read-totals').innerText.includes('nats/char')", timeout=30_000)
    assert "adapting as it read" in page.locator("#read-totals").inner_text()
    view = page.locator("#read-view")
    assert "que aquellos no son gigantes." in view.inner_text()
    assert view.locator("span").count() > 3  # coloured runs
    assert "\n" in view.inner_text()  # the line break is still a line break on the page

    page.get_by_role("tab", name="Look inside").click()
    page.locator("#inside-cell input").fill("5")
    page.locator("#inside-go").click()
    page.wait_for_function("document.querySelector('#inside-info').innerText.includes('Cell 5')", timeout=30_000)
    assert page.locator("#inside-view span").count() > 3
    assert "position in the word" in page.locator("#inside-ranking").inner_text()
    page.locator("#inside-cell input").fill("99999")
    page.locator("#inside-go").click()
    page.get_by_text("The cell must be a whole number").first.wait_for(timeout=20_000)  # the error toast
    page.close()
