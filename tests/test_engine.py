"""charrnn.engine: many requests stepped as one batch, each getting exactly the text it would get alone."""
import asyncio
import subprocess
import sys
import threading
import time

import pytest

from bench.solo import Solo
from charrnn.app.streaming import STREAMS_AT_FULL_RATE, busy_sentence, paced_updates, spaced
from charrnn.engine import Engine, Status
from charrnn.generate import SAMPLED, Batch, Job, Settings, SettingsError, complete
from charrnn.scheduler import Busy, Limits, Refusal
from conftest import ROOT, SEED

pytestmark = pytest.mark.usefixtures("one_thread")
MINE = Settings(length=150, temperature=0.9, top_k=12, top_p=0.95, sampling_seed=7)
# Busy neighbours with every kind of setting, joining before and after the request under test.
NEIGHBOURS = [(s, Settings(length=100 + 37 * i, temperature=(0, 0.5, 1.0, 1.7)[i % 4], top_k=(0, 3)[i % 2],
                           top_p=(1.0, 0.8)[i % 3 == 0], sampling_seed=i,
                           stop_at=(None, "sentence")[i % 5 == 0]))
              for i, s in enumerate(["Dijo don Quijote", "¿Qué gigantes?", "", "Sancho Panza"] * 4)]


@pytest.fixture
def engine(tiny_model):
    engine = Engine(tiny_model, threads=None)
    yield engine
    engine.close()


def until(condition, timeout: float = 30.0) -> None:
    """Wait for a condition another thread makes true (the engine's threads)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def same_text(out, want):
    assert (out.seed, out.greedy, out.sampled, out.sampling_seed) == (want.seed, want.greedy, want.sampled,
                                                                      want.sampling_seed)
    assert out.probs == pytest.approx(want.probs, abs=1e-5) and out.finished
    assert [c for c, _ in out.candidates] == [c for c, _ in want.candidates]


def test_a_request_gets_the_same_text_alone_and_among_16_busy_neighbours(engine, tiny_model):
    alone = complete(tiny_model, SEED, MINE)
    before = [engine.submit(s, settings, visitor=f"c{i}") for i, (s, settings) in enumerate(NEIGHBOURS[:8])]
    mine = engine.submit(SEED, MINE, visitor="me")
    after = [engine.submit(s, settings, visitor=f"d{i}") for i, (s, settings) in enumerate(NEIGHBOURS[8:])]
    same_text(engine.result(mine, timeout=60), alone)
    for request, (s, settings) in zip(before + after, NEIGHBOURS):
        same_text(engine.result(request, timeout=60), complete(tiny_model, s, settings))


def test_rows_leave_the_batch_on_stop_finish_and_cancel(tiny_model):
    stopping = next(Settings(length=300, temperature=0.8, sampling_seed=s,
                             stop_at="sentence") for s in range(50)
                    if len(complete(tiny_model, SEED, Settings(length=300, temperature=0.8, sampling_seed=s,
                                                               stop_at="sentence")).sampled) < 100)
    batch = Batch(tiny_model)
    short, stops, cancelled, long = (Job(tiny_model, SEED, s) for s in (
        Settings(length=3, sampling_seed=0), stopping, Settings(length=500, sampling_seed=1),
        Settings(length=500, sampling_seed=2)))
    for job in (short, stops, cancelled, long):
        batch.add(job)
    assert len(batch.rows) == 8
    ended = [batch.step() for _ in range(3)][-1]
    assert ended == [short] and short.finished and len(batch.rows) == 6  # finished: both rows gone at once
    batch.remove([cancelled])
    assert batch.step() == [] and len(batch.rows) == 4 and not cancelled.finished
    assert cancelled not in [job for job, _ in batch.rows]
    while stops.growing[SAMPLED]:
        batch.step()
    # its stopped sampled row left, its greedy row goes on
    assert [job for job, _ in batch.rows].count(stops) == 1
    assert stops.out.sampled[-1] in ".!?" and len(stops.out.greedy) == len(stops.out.sampled)


@pytest.mark.parametrize("stage", ["prefilling", "joining the batch"])
def test_a_failing_request_fails_alone(engine, tiny_model, monkeypatch, stage):
    with pytest.raises(SettingsError, match="Temperature must be"):
        engine.submit(SEED, Settings(temperature=-1))
    cls, name = (Job, "prefill") if stage == "prefilling" else (Batch, "add")
    original = getattr(cls, name)

    def or_fail(self, *job):
        if (job[0] if job else self).out.seed == "Sancho":
            raise RuntimeError("broken prefill")
        return original(self, *job)

    monkeypatch.setattr(cls, name, or_fail)
    others = [engine.submit(s, settings, visitor=f"c{i}") for i, (s, settings) in enumerate(NEIGHBOURS[:6])]
    broken = engine.submit("Sancho", MINE, visitor="broken")
    mine = engine.submit(SEED, MINE, visitor="me")
    with pytest.raises(RuntimeError, match="broken prefill"):
        engine.result(broken, timeout=60)
    assert broken.status is Status.FAILED
    same_text(engine.result(mine, timeout=60), complete(tiny_model, SEED, MINE))
    for request, (s, settings) in zip(others, NEIGHBOURS):
        same_text(engine.result(request, timeout=60), complete(tiny_model, s, settings))


def test_running_rows_keep_stepping_while_a_new_request_prefills(engine, tiny_model, monkeypatch):
    """Prefills run in the engine's prefill thread: a slow one holds up only its own request."""
    release, prefilling = threading.Event(), threading.Event()
    prefill = Job.prefill

    def slow(job):
        if job.out.seed == "Sancho":
            prefilling.set()
            assert release.wait(60)
        return prefill(job)

    monkeypatch.setattr(Job, "prefill", slow)
    running = engine.submit(SEED, MINE, visitor="running")
    until(lambda: running.snapshot().sampled)  # its rows are stepping
    slow_one = engine.submit("Sancho", MINE, visitor="slow")
    assert prefilling.wait(10)
    # it ran to its end meanwhile
    same_text(engine.result(running, timeout=60), complete(tiny_model, SEED, MINE))
    assert slow_one.status is Status.PREFILLING and slow_one.snapshot().sampled == ""
    release.set()
    same_text(engine.result(slow_one, timeout=60), complete(tiny_model, "Sancho", MINE))


def test_a_cancelled_request_frees_its_rows_and_its_place(engine):
    request = engine.submit(SEED, Settings(length=10_000), visitor="me")
    until(lambda: request.snapshot().sampled)  # it is running
    engine.cancel(request)
    assert request.wait(10) and request.status is Status.CANCELLED and not request.snapshot().finished
    assert len(request.snapshot().sampled) < 10_000
    assert engine.batch.rows == [] and engine.running == [] and engine.load == 0
    assert not engine.scheduler.visitors.running


def test_per_visitor_limit_queues_then_refuses_saying_which_limit(tiny_model):
    engine = Engine(tiny_model, Limits(per_visitor=1, per_visitor_waiting=1), threads=None)
    try:
        first = engine.submit(SEED, Settings(length=2000, sampling_seed=0), visitor="me")
        second = engine.submit(SEED, Settings(length=50, sampling_seed=1), visitor="me")  # waits its turn
        with pytest.raises(Busy) as refused:
            engine.submit(SEED, Settings(length=50), visitor="me")
        assert refused.value.refusal is Refusal.VISITOR_FULL and refused.value.held == 2  # the app says it
        other = engine.submit(SEED, Settings(length=50, sampling_seed=2), visitor="you")  # not held back
        assert engine.result(other, timeout=60).finished and not first.status.ended
        assert len(second.snapshot().sampled) == 0  # still waiting behind the same visitor's first
        engine.cancel(first)
        assert engine.result(second, timeout=60).finished
    finally:
        engine.close()


def test_a_request_ends_finished_at_its_length_or_stopped_by_its_rule(engine, tiny_model):
    rule = next(Settings(length=300, temperature=0.8, sampling_seed=s, stop_at="sentence") for s in range(50)
                if len(complete(tiny_model, SEED, Settings(length=300, temperature=0.8, sampling_seed=s,
                                                           stop_at="sentence")).sampled) < 100)
    stopped, finished = engine.submit(SEED, rule, visitor="a"), engine.submit(SEED, MINE, visitor="b")
    same_text(engine.result(stopped, timeout=60), complete(tiny_model, SEED, rule))
    same_text(engine.result(finished, timeout=60), complete(tiny_model, SEED, MINE))
    assert (stopped.status, finished.status) == (Status.STOPPED, Status.FINISHED)


def test_a_request_waits_then_prefills_then_runs_then_finishes(tiny_model, monkeypatch):
    seen, prefill, release = [], Job.prefill, threading.Event()

    def held(job):  # holds the prefill until the test has looked
        assert release.wait(60)
        return prefill(job)

    monkeypatch.setattr(Job, "prefill", held)
    engine = Engine(tiny_model, Limits(max_rows=2), threads=None)
    try:
        first = engine.submit(SEED, Settings(length=400, sampling_seed=0), visitor="a")
        second = engine.submit(SEED, MINE, visitor="b")
        until(lambda: first.status is Status.PREFILLING)
        seen.append(second.status)  # no rows for it yet
        release.set()
        until(lambda: first.status is Status.RUNNING)
        engine.result(first, timeout=60)
        seen += [first.status, engine.result(second, timeout=60) and second.status]
    finally:
        engine.close()
    assert seen == [Status.WAITING, Status.FINISHED, Status.FINISHED]


def test_closing_interrupts_what_waits_and_what_runs(tiny_model):
    engine = Engine(tiny_model, Limits(max_rows=2), threads=None)
    running = engine.submit(SEED, Settings(length=10_000), visitor="a")
    until(lambda: running.snapshot().sampled)
    waiting = engine.submit(SEED, Settings(length=20), visitor="b")
    engine.close()
    assert (running.status, waiting.status) == (Status.INTERRUPTED, Status.INTERRUPTED)
    with pytest.raises(Busy) as refused:
        engine.result(waiting, timeout=10)
    assert refused.value.refusal is Refusal.CLOSED
    with pytest.raises(Busy):
        engine.submit(SEED, MINE)


def test_full_batch_and_full_queue(tiny_model):
    engine = Engine(tiny_model, Limits(max_rows=2, max_waiting=1), threads=None)
    try:
        running = engine.submit(SEED, Settings(length=3000), visitor="a")
        until(lambda: running.snapshot().sampled)
        waiting = engine.submit(SEED, Settings(length=20), visitor="b")
        with pytest.raises(Busy) as refused:
            engine.submit(SEED, Settings(length=20), visitor="c")
        assert refused.value.refusal is Refusal.LINE_FULL
        assert len(engine.batch.rows) == 2 and waiting.snapshot().sampled == ""
        engine.cancel(running)
        assert engine.result(waiting, timeout=60).finished
    finally:
        engine.close()


@pytest.mark.parametrize("design", [Engine, Solo])
def test_both_designs_serve_concurrent_submitters_the_same_texts(design, tiny_model):
    engine = design(tiny_model)
    try:
        results = {}

        def one(i):
            s, settings = NEIGHBOURS[i]
            results[i] = engine.result(engine.submit(s, settings, visitor=str(i)), timeout=120)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(8):
            same_text(results[i], complete(tiny_model, *NEIGHBOURS[i]))
    finally:
        engine.close()


# ---- the page's stream of a request (charrnn.app.streaming: pacing and sentences are the app's)

def test_a_caller_that_leaves_cancels_its_request(engine):
    request = engine.submit(SEED, Settings(length=10_000), visitor="me")

    async def take_one():
        updates = paced_updates(engine, request, interval=0.01)
        out = await updates.__anext__()
        await updates.aclose()  # what Gradio does when the page closes the stream
        return out

    assert asyncio.run(take_one()).sampled
    assert request.wait(10) and request.status is Status.CANCELLED and not request.snapshot().finished
    assert engine.running == []


def test_an_async_caller_gets_the_growing_text_to_the_end(engine, tiny_model):
    async def take_all():
        return [out async for out in paced_updates(engine, engine.submit(SEED, MINE), interval=0.0)]

    outs = asyncio.run(take_all())
    assert len(outs) >= 2 and [o.finished for o in outs].count(True) == 1 and outs[-1].finished
    for before, after in zip(outs, outs[1:]):
        assert after.sampled.startswith(before.sampled) and after.greedy.startswith(before.greedy)
    same_text(outs[-1], complete(tiny_model, SEED, MINE))


def test_streamed_updates_are_spaced_out_when_many_requests_run():
    assert spaced(0.04, 1) == 0.04
    assert spaced(0.04, 16) == pytest.approx(0.04 * 16 / STREAMS_AT_FULL_RATE)  # 16 requests running


def test_the_engine_load_paces_the_stream(tiny_model):
    engine = Engine(tiny_model, Limits(max_rows=0), threads=None)  # nothing runs: the counts stay put
    try:
        assert engine.load == 0
        engine.scheduler.admitted = 16
        assert spaced(0.04, engine.load) == pytest.approx(0.04 * 16 / STREAMS_AT_FULL_RATE)
    finally:
        engine.scheduler.admitted = 0
        engine.close()


@pytest.mark.parametrize("busy, sentence", [
    (Busy(Refusal.VISITOR_FULL, 2), "You already have 2 generations running or waiting: let one finish"),
    (Busy(Refusal.VISITOR_FULL, 1), "You already have 1 generation running or waiting"),
    (Busy(Refusal.LINE_FULL), "The server is busy with other visitors' texts: try again in a minute."),
    (Busy(Refusal.CLOSED), "The generator has stopped; reload the page."),
])
def test_each_refusal_has_its_sentence(busy, sentence):
    assert sentence in busy_sentence(busy)


EXIT_WHILE_GENERATING = """
import sys, time
from bench.solo import Solo
from charrnn.engine import Engine
from charrnn.generate import Settings
from charrnn import load_model
model = load_model(sys.argv[1])
engine = (Engine if sys.argv[2] == "engine" else Solo)(model)
for i in range(4):
    engine.submit("En un lugar de la Mancha", Settings(length=1000, sampling_seed=i), visitor=str(i))
time.sleep(0.5)  # the rows are stepping when the program ends
"""


@pytest.mark.slow
@pytest.mark.parametrize("design", ["engine", "solo"])
def test_a_program_that_exits_while_the_engine_generates_exits_cleanly(design):
    """Without closing the engine at exit, a step still inside torch aborted the process (as Ctrl-C
    on the app during a generation did: 'terminate called without an active exception')."""
    proc = subprocess.run([sys.executable, "-c", EXIT_WHILE_GENERATING, str(ROOT / "weights"), design],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "terminate" not in proc.stderr, proc.stderr[-2000:]
