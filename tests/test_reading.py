"""charrnn.reading: readings admitted by the scheduler's rules, taking turns, stopped when their
caller goes."""
import asyncio
import threading
import time

import pytest

from charrnn.reading import Readers
from charrnn.scheduler import Busy, Limits, Refusal, Status


def test_a_visitor_past_its_limit_is_refused_and_others_are_not():
    readers, log = Readers(Limits(max_rows=8, max_waiting=10, per_visitor=1, per_visitor_waiting=2)), []
    mine = [readers.submit("x", ticking(10_000, log, "x")) for _ in range(3)]
    with pytest.raises(Busy) as refused:
        readers.submit("x", ticking(1, log, "x"))
    assert refused.value.refusal is Refusal.VISITOR_FULL and refused.value.held == 3
    other = readers.submit("y", ticking(3, log, "y"))  # another visitor starts at once, beside x's first
    wait(other)
    assert [j.status for j in mine] == [Status.RUNNING, Status.WAITING, Status.WAITING]
    assert readers.ahead(mine[2]) == 2
    readers.close()
    for job in mine:
        wait(job)


def ticking(pieces: int, log: list, name: str, pause: float = 0.002):
    def work(tick):
        for i in range(pieces):
            time.sleep(pause)  # a piece of work
            log.append(name)
            tick(i + 1, pieces)
        return name
    return work


def wait(job, timeout=30):
    assert job.wait(timeout), f"{job.visitor}'s job did not end"


def test_readings_take_turns_so_a_short_one_ends_long_before_a_long_one():
    readers, log = Readers(quantum=0.0), []  # hand the turn on at every tick
    long = readers.submit("a", ticking(400, log, "long"))
    while not log:
        time.sleep(0.001)
    short = readers.submit("b", ticking(5, log, "short"))
    wait(short)
    assert short.result == "short" and short.chars_read == short.total == 5
    assert not long.status.ended and log.count("long") < 400  # not waiting for the long one to end
    readers.cancel(long)
    wait(long)
    assert long.status is Status.CANCELLED and long.chars_read < 400


def test_only_slots_readings_compute_at_once():
    readers, inside, most = Readers(quantum=0.0, slots=1), [0], [0]
    lock = threading.Lock()

    def work(tick):
        for i in range(50):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.0005)
            with lock:
                inside[0] -= 1
            tick(i + 1, 50)

    jobs = [readers.submit(v, work) for v in "abc"]
    for job in jobs:
        wait(job)
    assert most[0] == 1 and all(job.status is Status.FINISHED for job in jobs)


def test_a_cancelled_waiting_reading_never_starts():
    readers, log = Readers(Limits(max_rows=2, per_visitor=1)), []
    first = readers.submit("a", ticking(10_000, log, "first"))
    second = readers.submit("b", ticking(10, log, "second"))
    assert second.status is Status.WAITING and readers.ahead(second) == 1  # the first, served
    readers.cancel(second)
    assert second.status is Status.CANCELLED
    readers.cancel(first)
    wait(first)
    assert "second" not in log and readers.jobs() == [] and readers.scheduler.admitted == 0


def test_errors_reach_the_caller_and_free_the_place():
    readers = Readers(Limits(per_visitor=1, per_visitor_waiting=0))

    def fails(tick):
        raise ValueError("the text needs at least 2 characters the model knows")

    job = readers.submit("a", fails)
    wait(job)
    assert job.status is Status.FAILED and isinstance(job.error, ValueError)
    again = readers.submit("a", lambda tick: 42)  # the visitor's place was freed
    wait(again)
    assert again.result == 42


def test_watch_reports_progress_and_leaving_early_cancels():
    readers, log = Readers(), []

    async def follow(job, leave_after=None):
        seen = []
        async for j in readers.watch(job, interval=0.01):
            seen.append((j.status, j.chars_read))
            if leave_after is not None and len(seen) >= leave_after:
                break
        return seen

    job = readers.submit("a", ticking(20, log, "a", pause=0.005))
    seen = asyncio.run(follow(job))
    assert seen[-1] == (Status.FINISHED, 20) and job.result == "a"
    job = readers.submit("a", ticking(10_000, log, "b", pause=0.005))
    asyncio.run(follow(job, leave_after=3))
    wait(job)
    assert job.status is Status.CANCELLED and job.chars_read < 10_000


def test_closed_readers_refuse_and_cancel():
    readers, log = Readers(), []
    job = readers.submit("a", ticking(10_000, log, "a"))
    readers.close()
    wait(job)
    with pytest.raises(Busy) as refused:
        readers.submit("b", ticking(1, log, "b"))
    assert refused.value.refusal is Refusal.CLOSED
