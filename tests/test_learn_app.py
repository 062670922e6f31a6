"""The "Watch it learn" and "Write like this" tabs: their endpoints through gradio_client on a
loopback port, and both tabs in a real browser, on a tiny model trained here with snapshots and
on the shipped weights (which have none)."""
import json
import os
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from charrnn.app import handlers, views
from charrnn.generate import Settings, complete
from charrnn.hub import load_model
from charrnn.snapshots import find_snapshots
from conftest import LONG, PASSAGE, call, request, result, wait_for

pytestmark = pytest.mark.slow  # servers and browsers

SEED = "En un lugar"
WATCH = dict(seed=SEED, length=60, temperature=0.8, sampling_seed=5)


@pytest.fixture(scope="module")
def run_dir(trained):
    return trained[1]


@pytest.fixture(scope="module")
def url(launch_app, run_dir):
    return launch_app(load_model(run_dir), str(run_dir))


@pytest.fixture(scope="module")
def client(url):
    return Client(url, analytics_enabled=False, verbose=False)


def test_named_endpoints_take_the_seeds(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in endpoints["/watch"]["parameters"]] == list(WATCH)
    assert [p["parameter_name"] for p in endpoints["/write_like"]["parameters"]] == ["passage", *WATCH]


def test_watch_gives_each_snapshot_what_it_writes_alone_the_same_each_time(client, run_dir):
    html, rows = client.predict(*WATCH.values(), api_name="/watch")
    snapshots = find_snapshots(run_dir)
    assert [r["step"] for r in rows] == [s.step for s in snapshots] and rows[-1]["moments"] == ["best"]
    settings = Settings(length=60, temperature=0.8, sampling_seed=5)
    for row, snapshot in zip(rows, snapshots):
        alone = complete(snapshot.load(), SEED, settings)
        assert (row["greedy"], row["sampled"]) == (alone.greedy, alone.sampled)
        assert row["val_loss"] == snapshot.val_loss and f'data-step="{snapshot.step}"' in html
    assert rows[0]["sampled"] != rows[-1]["sampled"]  # they learned in between
    assert client.predict(*WATCH.values(), api_name="/watch")[1] == rows


def test_the_best_snapshot_is_the_page_s_own_model(client):
    rows = client.predict(*WATCH.values(), api_name="/watch")[1]
    greedy, sampled, *_ = client.predict(SEED, 60, 0.8, 0, 1.0, 5, "don't stop", api_name="/generate")
    assert (SEED + rows[-1]["greedy"], SEED + rows[-1]["sampled"]) == (greedy, sampled)


def test_a_model_without_snapshots_says_so(launch_app, tiny_model, tiny_model_dir):
    client = Client(launch_app(tiny_model, str(tiny_model_dir)), analytics_enabled=False, verbose=False)
    with pytest.raises(AppError, match="This model has no snapshots of its training"):
        client.predict(*WATCH.values(), api_name="/watch")


def test_write_like_streams_both_texts_says_how_much_it_adapted_and_leaves_the_model_alone(client):
    before = client.predict(SEED, 60, 0.8, 0, 1.0, 5, "don't stop", api_name="/generate")[:2]
    job = client.submit(PASSAGE, "Querida", 80, 0.8, 3, api_name="/write_like")
    greedy, sampled, info, how = job.result()
    updates = job.outputs()
    assert len(updates) > 2 and updates[0][2].startswith("Reading the passage")
    assert greedy.startswith("Querida") and len(greedy) == len(sampled) == len("Querida") + 80
    assert how["end"] < how["end_unadapted"]
    assert how["gain"] == pytest.approx(how["end_unadapted"] - how["end"], abs=2e-4)
    assert f"{how['gain']:+.3f} nats/char" in info and "sampling seed **3**" in info
    assert client.predict(PASSAGE, "Querida", 80, 0.8, 3, api_name="/write_like")[:2] == (greedy, sampled)
    assert client.predict(SEED, 60, 0.8, 0, 1.0, 5, "don't stop", api_name="/generate")[:2] == before


@pytest.mark.parametrize("passage, temperature, message", [
    ("   ", 0.8, "Paste a text to read first"),
    ("x" * 20_001, 0.8, "the limit is 20,000"),
    ("☃☃☃", 0.8, "at least 2 characters the model knows"),
    (PASSAGE, "hot", "Temperature must be a number"),
])
def test_write_like_bad_input_gets_a_sentence(client, passage, temperature, message):
    with pytest.raises(AppError, match=message):
        client.predict(passage, "Querida", 50, temperature, 1, api_name="/write_like")


def test_watch_bad_input_gets_a_sentence(client):
    with pytest.raises(AppError, match="Length must be a whole number"):
        client.predict(SEED, 5, 0.8, 1, api_name="/watch")


def screenshot(page, tmp_path, name: str) -> None:
    """The page as it is now, under pytest's tmp dir or $CHARRNN_SCREENSHOT_DIR, to look at by eye."""
    shots = Path(os.environ.get("CHARRNN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def test_both_tabs_in_a_browser_with_snapshots(browser, url, run_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url, wait_until="networkidle")
    page.get_by_role("tab", name="Watch it learn").click()
    assert "snapshots of this model as it trained" in page.locator("#watch-note").inner_text()
    page.locator("#watch-seed textarea").fill(SEED)
    page.locator("#watch-go").click()
    cards = page.locator("#watch-view .snapshot")
    page.wait_for_function("document.querySelectorAll('#watch-view .snapshot').length > 0", timeout=30_000)
    assert cards.count() == len(find_snapshots(run_dir))
    assert "step 5 " in cards.first.inner_text() and "best" in cards.last.inner_text()
    page.wait_for_function(f"[...document.querySelectorAll('#watch-view .snapshot .sampled > div')].every("
                           f"d => d.innerText.length >= {len(SEED) + 200})", timeout=30_000)  # all written
    screenshot(page, tmp_path, "watch")
    write_like_in(page)
    screenshot(page, tmp_path, "write")
    page.close()


def test_both_tabs_in_a_browser_on_the_shipped_weights(browser, launch_app):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(launch_app(load_model("weights"), "weights"), wait_until="networkidle")
    page.get_by_role("tab", name="Watch it learn").click()
    assert views.NO_SNAPSHOTS.split(",")[0] in page.locator("#watch-note").inner_text()
    page.locator("#watch-go").click()
    toast = page.get_by_text("This model has no snapshots of its training").nth(1)  # the note, then the toast
    toast.wait_for(timeout=20_000)
    write_like_in(page)
    page.close()


def write_like_in(page) -> None:
    """Pick the example passage, read it, and see both continuations and how much the model adapted."""
    page.get_by_role("tab", name="Write like this").click()
    page.locator("#write-passage textarea").fill(PASSAGE)
    page.locator("#write-go").click()
    page.wait_for_function("document.querySelector('#write-info').innerText.includes('sampling seed')",
                           timeout=60_000)
    assert "adapted by" in page.locator("#write-info").inner_text()
    for side in ("greedy", "sampled"):
        text = page.locator(f"#write-{side} textarea").input_value()
        assert text.startswith("Querida") and len(text) == len("Querida") + 200


def test_write_like_is_one_of_the_visitor_s_readings(app):
    url, readers = app()
    for _ in range(3):  # one reading running and two waiting: this visitor's limit
        assert call(url, "score", [LONG, True], "7.7.7.7")[0] == 200
    wait_for(lambda: len(readers.jobs()) == 3, "the three readings")
    status, event = call(url, "write_like", [PASSAGE, "Querida", 50, 0.8, 1], "7.7.7.7")
    refused = result(url, "write_like", event)
    assert "event: error" in refused and "You already have 3 readings running or waiting" in refused
    how = Client(url, analytics_enabled=False, verbose=False, headers={"X-Forwarded-For": "8.8.8.8"}).predict(
        PASSAGE, "Querida", 50, 0.8, 1, api_name="/write_like")[3]
    assert how["chars"] > 0  # another visitor's is read meanwhile


def test_a_whole_passage_and_a_seed_fit_in_a_write_like_request(app):
    url, _ = app()
    passage = "Ω" * handlers.READ_LIMIT  # every char escaped in the ASCII JSON clients send: ~120 KB
    body = json.dumps({"data": [passage, "Querida" * 280, 50, 0.8, 1]}).encode()
    assert len(body) > 64 * 1024  # over the generation's limit
    status, text = request(url, "POST", "/gradio_api/call/write_like", body)
    assert status == 200, text  # the app answers it: with its own sentence, as no char is known
    assert "at least 2 characters the model knows" in result(url, "write_like", json.loads(text)["event_id"])
