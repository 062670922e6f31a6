"""charrnn.scheduler: admission, fairness and per-visitor limits, decided by plain calls (no threads)."""
from dataclasses import dataclass

import pytest

from charrnn.scheduler import Busy, Limits, Refusal, Scheduler, VisitorLimit


@dataclass(eq=False)
class Req:
    visitor: str
    name: str = ""


def line(scheduler: Scheduler, *visitors: str) -> list[Req]:
    requests = [Req(v, f"{v}{i}") for i, v in enumerate(visitors)]
    for r in requests:
        scheduler.enqueue(r)
    return requests


def names(requests) -> list[str]:
    return [r.name for r in requests]


def test_admits_the_oldest_first_while_rows_are_free():
    scheduler = Scheduler(Limits(max_rows=6, per_visitor=5))
    line(scheduler, "a", "b", "c", "d", "e")
    assert names(scheduler.admit()) == ["a0", "b1", "c2"]  # 6 rows: 3 requests of 2 rows
    assert scheduler.admit() == [] and scheduler.admitted == 3 and names(scheduler.waiting) == ["d3", "e4"]


def test_an_ended_request_frees_its_rows_for_the_next_in_line():
    scheduler = Scheduler(Limits(max_rows=4))
    first, second, third = line(scheduler, "a", "b", "c")
    assert scheduler.admit() == [first, second]
    scheduler.release(first)
    assert scheduler.admit() == [third]


def test_a_visitor_runs_at_most_its_limit_and_its_next_waits_its_turn():
    scheduler = Scheduler(Limits(max_rows=64, per_visitor=2))
    line(scheduler, "a", "a", "a", "b")
    assert names(scheduler.admit()) == ["a0", "b3", "a1"]  # in the order they start: fewest running first
    assert names(scheduler.waiting) == ["a2"]
    assert scheduler.admit() == []  # rows are free, but "a" runs 2 already
    scheduler.release(Req("a"))
    assert names(scheduler.admit()) == ["a2"]


def test_a_newcomer_goes_before_another_visitors_second_request():
    scheduler = Scheduler(Limits(max_rows=4, per_visitor=2))
    line(scheduler, "a", "a", "a", "b", "c")  # "a" came first, with three
    assert names(scheduler.admit()) == ["a0", "b3"]  # "b" runs nothing: it goes before a's second
    scheduler.release(Req("b"))
    assert names(scheduler.admit()) == ["c4"]  # and so does "c", though a1 is older


def test_a_visitor_over_its_total_is_refused_with_the_count():
    scheduler = Scheduler(Limits(per_visitor=1, per_visitor_waiting=1))
    line(scheduler, "a", "a")
    with pytest.raises(Busy) as refused:
        scheduler.enqueue(Req("a"))
    assert refused.value.refusal is Refusal.VISITOR_FULL and refused.value.held == 2
    line(scheduler, "b")  # others are not held back


def test_a_full_waiting_line_refuses_everyone():
    scheduler = Scheduler(Limits(max_rows=0, max_waiting=2))
    line(scheduler, "a", "b")
    with pytest.raises(Busy) as refused:
        scheduler.enqueue(Req("c"))
    assert refused.value.refusal is Refusal.LINE_FULL
    assert scheduler.admit() == []  # no rows at all: nothing starts


def test_a_withdrawn_request_leaves_the_line_and_its_visitors_count():
    scheduler = Scheduler(Limits(max_rows=0, per_visitor=1, per_visitor_waiting=1))
    first, _ = line(scheduler, "a", "a")
    scheduler.withdraw(first)
    line(scheduler, "a")  # room again for a third
    assert len(scheduler.waiting) == 2


def test_a_closed_scheduler_refuses_and_hands_back_the_waiting_line():
    scheduler = Scheduler(Limits(max_rows=0))
    waiting = line(scheduler, "a", "b")
    assert scheduler.close() == waiting
    with pytest.raises(Busy) as refused:
        scheduler.enqueue(Req("c"))
    assert refused.value.refusal is Refusal.CLOSED


def test_visitor_limit_counts_back_to_nothing():
    limit = VisitorLimit(running=1, waiting=1)
    limit.queued("a")
    limit.queued("a")
    assert not limit.may_queue("a") and limit.may_queue("b")
    limit.started("a")
    assert not limit.may_start("a") and limit.held("a") == 2
    limit.ended("a")
    limit.left_line("a")
    assert not limit.running and not limit.waiting  # an idle visitor holds no entry
