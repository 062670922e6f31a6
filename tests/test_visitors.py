"""Fair to every visitor (issue 21 items 1, 2, 4, 5): the reading endpoints against the real app on
a loopback port, visitors told apart by X-Forwarded-For (uvicorn trusts 127.0.0.1 by default).

Readings are slowed down (a sleep per piece) so that they are still running when the next
request comes; no test asserts a time."""
import http.client
import json
from urllib.parse import urlparse

import pytest

from charrnn.app import handlers
from charrnn.scheduler import Status
from conftest import GOOD, LONG, call, connect, request, result, wait_for

SHORT = "Dijo Sancho: ¿qué gigantes?"


def jobs(readers) -> list:
    return readers.jobs()


def test_a_flood_of_unread_readings_from_one_visitor_shuts_nobody_out(app):
    assert len(LONG) == handlers.READ_LIMIT  # the longest text a visitor may send
    url, readers = app()
    answers = [call(url, "score", [LONG, True], "6.6.6.6") for _ in range(300)]  # more than the queue's 256
    assert all(status == 200 for status, _ in answers)  # never "Queue is full": readings do not wait in it
    limits = readers.scheduler.limits
    assert len(jobs(readers)) == limits.per_visitor + limits.per_visitor_waiting  # the rest: refused at once
    refused = result(url, "score", answers[-1][1])
    assert "event: error" in refused and "You already have 3 readings running or waiting" in refused
    greedy, sampled, *_ = connect(url, "2.2.2.2").predict(*GOOD.values(), api_name="/generate")
    assert len(sampled) == len(GOOD["seed"]) + GOOD["length"]
    _, totals, summary, _ = connect(url, "3.3.3.3").predict(SHORT, False, api_name="/score")
    assert summary["chars"] + summary["unknown_chars"] == len(SHORT)
    assert any(job.status is Status.RUNNING for job in jobs(readers))  # the flood's reading is still going


def test_a_short_reading_does_not_wait_for_another_visitors_long_one(app):
    url, readers = app()
    long = connect(url, "4.4.4.4").submit(LONG, True, api_name="/score")
    wait_for(lambda: any(j.chars_read for j in jobs(readers)), "the long reading to start")
    [reading] = jobs(readers)
    _, _, summary, _ = connect(url, "5.5.5.5").predict(SHORT, True, api_name="/score")
    assert summary["chars"] + summary["unknown_chars"] == len(SHORT)
    assert not reading.status.ended and reading.chars_read < reading.total  # it took turns with the long one
    long.cancel()


def test_work_whose_caller_has_gone_is_not_computed(app):
    url, readers = app()
    # Two pages of one visitor (Gradio's /cancel stops every run of one page's event at once).
    first = connect(url, "7.7.7.7").submit(LONG, True, api_name="/score")
    wait_for(lambda: any(j.chars_read for j in jobs(readers)), "the first reading to start")
    second = connect(url, "7.7.7.7").submit(LONG, False, api_name="/score")
    wait_for(lambda: len(jobs(readers)) == 2, "the second reading to wait")
    running, waiting = sorted(jobs(readers), key=lambda j: j.status is not Status.RUNNING)
    assert waiting.status is Status.WAITING
    second.cancel()  # leaves the line and never starts
    wait_for(lambda: waiting.status.ended, "the waiting reading to end")
    assert waiting.chars_read == 0 and running.status is Status.RUNNING
    first.cancel()  # stops at its next piece
    wait_for(lambda: running.status.ended, "the running reading to stop")
    assert running.chars_read < running.total and running.status is Status.CANCELLED
    assert jobs(readers) == []


def test_a_closed_result_stream_stops_the_reading(app):
    url, readers = app()
    status, event_id = call(url, "score", [LONG, True], "8.8.8.8")
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    conn.request("GET", f"/gradio_api/call/score/{event_id}", headers={"X-Forwarded-For": "8.8.8.8"})
    response = conn.getresponse()
    wait_for(lambda: any(j.chars_read for j in jobs(readers)), "the reading to start")
    [reading] = jobs(readers)
    response.close()
    conn.close()  # the caller goes away mid-reading
    wait_for(lambda: reading.status.ended, "the reading to stop")
    assert reading.chars_read < reading.total


def test_a_spoofed_leftmost_forwarded_address_is_not_a_new_visitor(app, monkeypatch):
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")  # read by uvicorn when the server starts
    url, readers = app()
    for i in range(3):  # the visitor writes a new address each time; the proxy appends the real one
        assert call(url, "score", [LONG, True], f"10.0.0.{i}, 9.9.9.{i}, 1.2.3.4")[0] == 200
    wait_for(lambda: len(jobs(readers)) == 3, "three readings")
    assert {job.visitor for job in jobs(readers)} == {"1.2.3.4"}
    status, event_id = call(url, "score", [LONG, True], "9.9.9.99, 1.2.3.4")
    assert "You already have 3 readings running or waiting" in result(url, "score", event_id)


@pytest.mark.parametrize("chars, alphabet, answer", [
    (15_000, "αβγδ εζηθ, ", '"unknown_chars": 10910'),
    (handlers.READ_LIMIT, "🙂", "at least 2 characters the model knows")])
def test_any_text_within_the_read_limit_is_accepted_whatever_its_script(app, chars, alphabet, answer):
    url, _ = app()
    text = (alphabet * chars)[:chars]
    body = json.dumps({"data": [text, False]}).encode()  # ASCII-only JSON, as clients send it
    assert len(body) > 64 * 1024  # over the old one-size limit
    status, text = request(url, "POST", "/gradio_api/call/score", body)
    assert status == 200, text
    assert answer in result(url, "score", json.loads(text)["event_id"])


def test_a_refused_body_names_what_was_too_long_for_its_endpoint(app):
    url, _ = app()
    body = json.dumps({"data": ["🙂" * (handlers.READ_LIMIT + 2000), False]}).encode()
    status, answer = request(url, "POST", "/gradio_api/call/score", body)
    assert status == 413 and "a text to read has up to 20,000 characters" in json.loads(answer)["detail"]
    body = json.dumps({"data": ["a" * 70_000]}).encode()
    status, answer = request(url, "POST", "/gradio_api/call/generate", body)
    assert status == 413 and "the last 2,000 characters of a seed" in json.loads(answer)["detail"]
    status, answer = call(url, "score", ["a" * (handlers.READ_LIMIT + 1), False], "1.1.1.1")
    assert status == 200 and "the limit is 20,000" in result(url, "score", answer)  # the app's own sentence
