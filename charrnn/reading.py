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
- Progress: work reports the chars it has read through its tick, for a progress bar.

A reading's life is its `status`, in the engine's vocabulary (charrnn.scheduler.Status):
WAITING -> RUNNING (-> CANCELLING once its caller has gone), and then how it ended: FINISHED (its
work returned), CANCELLED (its caller went, or the readers closed), FAILED (its work raised:
`error`) or REFUSED (a limit: `submit` raised Busy). `status.ended` says whether it has ended;
`wait()` blocks until then.

The work itself is a function `work(tick) -> result` that calls `tick(chars_read, total)` between
its pieces (charrnn.text_reading.read and charrnn.inside.look take such a tick).
"""
import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from .scheduler import ROWS_PER_REQUEST, Busy, Limits, Scheduler, Status, wake

Tick = Callable[[int, int], None]
QUANTUM = 0.05  # s a reading computes before it lets the next one have a turn
# 4 readings served at once (the scheduler counts places in rows, ROWS_PER_REQUEST a request), 32
# waiting; a visitor: 1 served, 2 waiting.
LIMITS = Limits(max_rows=4 * ROWS_PER_REQUEST, max_waiting=32, per_visitor=1, per_visitor_waiting=2)


class Cancelled(Exception):
    """Raised inside a reading's thread, at a tick, when its caller has gone: it stops the work."""


@dataclass(eq=False)
class Job:
    """One reading: its visitor, its work, and what its caller sees of it. The readers change the
    status with their lock held; anyone may read it."""
    visitor: str
    work: Callable[[Tick], object]
    status: Status = Status.WAITING
    chars_read: int = 0  # of `total`
    total: int = 0
    result: object = None  # what the work returned, once FINISHED
    error: BaseException | None = None  # why it FAILED
    listeners: list[Callable[[], None]] = field(default_factory=list)  # called at each change
    _ended: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the reading has ended (True) or `timeout` s have passed (False)."""
        return self._ended.wait(timeout)

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
            try:
                self.scheduler.enqueue(job)
            except Busy:
                self._end(job, Status.REFUSED)
                raise
            self._start_ready()
        return job

    def cancel(self, job: Job) -> None:
        """The caller has gone: a waiting job never starts, a running one stops at its next tick."""
        with self.cond:
            if job.status is Status.WAITING:
                self.scheduler.withdraw(job)
                self._end(job, Status.CANCELLED)
                self._start_ready()
            elif not job.status.ended:
                job.status = Status.CANCELLING
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
        """The job at each change of status or progress, and at least every `interval` s, until it
        ends (the last one yielded has ended). Leaving early cancels it."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        listener = lambda: loop.call_soon_threadsafe(event.set)  # noqa: E731 (wakes this loop from a thread)
        job.listeners.append(listener)
        try:
            while not job.status.ended:
                yield job
                try:
                    await asyncio.wait_for(event.wait(), interval)
                except TimeoutError:
                    pass
                event.clear()
            yield job
        finally:
            job.listeners.remove(listener)
            if not job.status.ended:
                self.cancel(job)

    # ------------------------------------------------------------------ inside (call with self.cond held)

    def _start_ready(self) -> None:
        for job in self.scheduler.admit():
            job.status = Status.RUNNING
            self.turns.append(job)
            threading.Thread(target=self._run, args=(job,), name="charrnn-reading", daemon=True).start()
            job.wake()

    def _end(self, job: Job, status: Status, error: BaseException | None = None) -> None:
        job.status, job.error = status, error
        job._ended.set()
        job.wake()

    def _wait_for_turn(self, job: Job) -> None:
        while job not in self.turns[: self.slots] and job.status is not Status.CANCELLING:
            self.cond.wait()
        if job.status is Status.CANCELLING:
            raise Cancelled()
        self.since.setdefault(job, time.monotonic())

    # ------------------------------------------------------------------ in the job's thread

    def _run(self, job: Job) -> None:
        status, error = Status.FINISHED, None
        try:
            with self.cond:
                self._wait_for_turn(job)
            job.result = job.work(lambda chars_read, total: self._tick(job, chars_read, total))
        except Cancelled:
            status = Status.CANCELLED
        except BaseException as e:  # the caller gets it
            status, error = Status.FAILED, e
        with self.cond:
            self.turns.remove(job)
            self.since.pop(job, None)
            self.scheduler.release(job)
            self._end(job, status, error)
            self._start_ready()
            self.cond.notify_all()

    def _tick(self, job: Job, chars_read: int, total: int) -> None:
        """Progress from the job's work; hands the turn on when it is due, and stops a cancelled job."""
        job.chars_read, job.total = chars_read, total
        job.wake()
        with self.cond:
            if job.status is Status.CANCELLING:
                raise Cancelled()
            if len(self.turns) > self.slots and time.monotonic() - self.since[job] >= self.quantum:
                self.turns.remove(job)  # to the back of the line; the next one computes
                self.turns.append(job)
                self.since.pop(job)
                self.cond.notify_all()
                self._wait_for_turn(job)
