"""Reading work for many visitors at once (the app's Read a text and Look inside tabs), fairly.

- Admission by the engine's own rules (charrnn.scheduler.Scheduler, fairness included): a visitor
  has at most one reading served at once and two waiting, all visitors together 4 and 32; more
  are refused at once with Busy. Nothing waits in the web server's own queue, so readings can
  never fill the queue that generation uses.
- Turns: each served reading runs in a thread of its own, but only `slots` of them compute at
  once; at each progress tick a reading that has held its turn for `quantum` seconds hands it to
  the next one and waits for its turn again (round robin). So a visitor's short reading finishes
  in about twice its time alone even while another visitor reads 20,000 chars adaptively: it
  never waits for that reading to end.
- Cancelling: a reading whose caller has gone (`cancel`, or leaving `watch` early) stops at its
  next tick, or never starts if it was waiting.
- Progress: work reports chars done through its tick, for a progress bar.

The work itself is a function `work(tick) -> result` that calls `tick(done, total)` between its
pieces (charrnn.evaluate.read and charrnn.inside.look take such a tick).
"""
import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from .scheduler import ROWS_PER_REQUEST, Limits, Scheduler, wake

Tick = Callable[[int, int], None]
QUANTUM = 0.05  # s a reading computes before it lets the next one have a turn
# 4 readings served at once (the scheduler counts places in rows, ROWS_PER_REQUEST a request), 32
# waiting; a visitor: 1 served, 2 waiting.
LIMITS = Limits(max_rows=4 * ROWS_PER_REQUEST, max_waiting=32, per_visitor=1, per_visitor_waiting=2)


class Cancelled(Exception):
    """Raised inside a reading's thread, at a tick, when its caller has gone."""


@dataclass(eq=False)
class Job:
    """One reading: its visitor, its work, and what its caller sees of it."""
    visitor: str
    work: Callable[[Tick], object]
    state: str = "waiting"  # waiting -> running -> done
    done: int = 0  # chars read so far, of `total`
    total: int = 0
    result: object = None
    error: BaseException | None = None
    cancelled: bool = False
    ended: threading.Event = field(default_factory=threading.Event)
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def wake(self) -> None:
        wake(self.listeners)


class Readers:
    """Admission, turns and cancelling for reading work; see the module's docstring."""

    def __init__(self, limits: Limits = LIMITS, slots: int = 1, quantum: float = QUANTUM):
        self.scheduler = Scheduler(limits)
        self.slots, self.quantum = slots, quantum
        self.cond = threading.Condition()
        self.turns: list[Job] = []  # running jobs in turn order: the first `slots` compute
        self.since: dict[Job, float] = {}  # when each computing job got its turn

    def submit(self, visitor: str, work: Callable[[Tick], object]) -> Job:
        """A new reading, waiting or already started; raises Busy past a limit."""
        job = Job(visitor, work)
        with self.cond:
            self.scheduler.enqueue(job)
            self._start_ready()
        return job

    def cancel(self, job: Job) -> None:
        """The caller has gone: a waiting job never starts, a running one stops at its next tick."""
        with self.cond:
            job.cancelled = True
            if job.state == "waiting":
                self.scheduler.withdraw(job)
                self._end(job, Cancelled())
                self._start_ready()
            self.cond.notify_all()

    def close(self) -> None:
        """Refuse new readings and cancel every one there is."""
        with self.cond:
            jobs = self.scheduler.close() + list(self.turns)
        for job in jobs:
            self.cancel(job)

    def jobs(self) -> list[Job]:
        """Every reading not yet ended: served ones, then waiting ones."""
        with self.cond:
            return list(self.turns) + list(self.scheduler.waiting)

    def ahead(self, job: Job) -> int:
        """How many readings are ahead of a waiting `job`: those served, those waiting before it."""
        with self.cond:
            waiting = list(self.scheduler.waiting)
            return len(self.turns) + waiting.index(job) if job in waiting else 0

    async def watch(self, job: Job, interval: float = 0.5) -> AsyncIterator[Job]:
        """The job at each change of state or progress, and at least every `interval` s, until it
        ends (the last one yielded has ended). Leaving early cancels it."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        listener = lambda: loop.call_soon_threadsafe(event.set)  # noqa: E731 (wakes this loop from a thread)
        job.listeners.append(listener)
        try:
            while not job.ended.is_set():
                yield job
                try:
                    await asyncio.wait_for(event.wait(), interval)
                except TimeoutError:
                    pass
                event.clear()
            yield job
        finally:
            job.listeners.remove(listener)
            if not job.ended.is_set():
                self.cancel(job)

    # ------------------------------------------------------------------ inside (call with self.cond held)

    def _start_ready(self) -> None:
        for job in self.scheduler.admit():
            job.state = "running"
            self.turns.append(job)
            threading.Thread(target=self._run, args=(job,), name="charrnn-reading", daemon=True).start()
            job.wake()

    def _end(self, job: Job, error: BaseException | None = None) -> None:
        job.state, job.error = "done", error
        job.ended.set()
        job.wake()

    def _wait_for_turn(self, job: Job) -> None:
        while job not in self.turns[: self.slots] and not job.cancelled:
            self.cond.wait()
        if job.cancelled:
            raise Cancelled()
        self.since.setdefault(job, time.monotonic())

    # ------------------------------------------------------------------ in the job's thread

    def _run(self, job: Job) -> None:
        error = None
        try:
            with self.cond:
                self._wait_for_turn(job)
            job.result = job.work(lambda done, total: self._tick(job, done, total))
        except BaseException as e:  # the caller gets it, Cancelled included
            error = e
        with self.cond:
            self.turns.remove(job)
            self.since.pop(job, None)
            self.scheduler.release(job)
            self._end(job, error)
            self._start_ready()
            self.cond.notify_all()

    def _tick(self, job: Job, done: int, total: int) -> None:
        """Progress from the job's work; hands the turn on when it is due, and stops a cancelled job."""
        job.done, job.total = done, total
        job.wake()
        with self.cond:
            if job.cancelled:
                raise Cancelled()
            if len(self.turns) > self.slots and time.monotonic() - self.since[job] >= self.quantum:
                self.turns.remove(job)  # to the back of the line; the next one computes
                self.turns.append(job)
                self.since.pop(job)
                self.cond.notify_all()
                self._wait_for_turn(job)
