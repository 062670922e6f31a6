"""One generation engine for every visitor: continuous batching of one-char steps.

A worker thread per loaded model steps the rows of *all* active requests (each a greedy and a
sampled row, see `generate.Batch`) as one batch per character, as LLM servers (vLLM, TGI) do for
transformers. A step at batch 2 is mostly fixed per-call cost, so one batch for 16 requests
costs far less than 16 steps of 2: on this 2-core CPU the shipped LSTM needs ~0.5 ms for 2 rows
and ~1.9 ms for 32. On a GPU a step costs about the same from 2 rows to hundreds.

- A new request's seed is read (prefill) and its rows join at the next step; finished, stopped
  and cancelled rows leave at once. Each row has its own temperature, top-k, top-p, stop rule
  and random numbers, so a request's text depends only on its own inputs and sampling seed.
- Limits: at most `max_rows` rows step together, and `max_waiting` requests wait behind them;
  a client (an IP address, as the web server resolves it) runs at most `per_client` requests at
  once and may queue `per_client_waiting` more; anything beyond is refused with `Busy`, whose
  message is a sentence for the user.
- Threads: a stepper steps the batch and a reader reads new requests' seeds (prefill) beside
  it, so a burst of arrivals or a long seed never stalls the running rows (in the app, under 16
  clients, a seed read inside the step loop took ~50 ms, during which no row moved). On the CPU
  torch runs on `threads` threads (1 by default): a one-char step is small, and on a 2-core
  machine the web server, the clients' connections and the engine share the cores; a second
  torch thread made the app slower under load, not faster.

`Solo` is the design this replaced (each request alone at batch 2, two at a time), kept behind
the same interface so that `bench/app_load.py` can compare the two in one run.
"""
import asyncio
import atexit
import threading
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Iterator

import torch

from .generate import Batch, Job, Output, Settings
from .model import CharRNN


class Busy(Exception):
    """A request refused by a limit; the message says which and what to do."""


STREAMS_AT_FULL_RATE = 2  # see _Base.spaced
STOPPED = "The generator has stopped; reload the page."


@dataclass(frozen=True)
class Limits:
    max_rows: int = 64  # rows stepped together: 32 requests
    max_waiting: int = 128  # requests waiting for rows; more are refused
    per_client: int = 2  # requests a client runs at once; its next ones wait their turn
    per_client_waiting: int = 6  # requests a client may have waiting; more are refused


@dataclass(eq=False)
class Ticket:
    """A submitted request: its Job, whose it is, and how its reader learns of progress."""
    job: Job
    client: str
    error: Exception | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def wake(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except RuntimeError:  # the reader's event loop has closed: nobody to tell
                pass

    def snapshot(self) -> Output:
        return self.job.snapshot()


def _close_at_exit(ref: weakref.ref) -> None:
    """Stop an engine that is still generating when Python exits: a thread left inside torch at
    exit aborts the process ('terminate called without an active exception'), as Ctrl-C on
    `python app.py` during a generation did."""
    engine = ref()
    if engine is not None:
        engine.close()


class _Base:
    """Submitting, reading and cancelling, shared by the Engine and the old Solo design."""

    def __init__(self, model: CharRNN, limits: Limits):
        self.model, self.limits = model, limits
        self.cond = threading.Condition()
        self.waiting: deque[Ticket] = deque()
        self.active, self.queued = Counter(), Counter()  # per client
        self.stopped = False
        atexit.register(_close_at_exit, weakref.ref(self))

    def submit(self, seed_text: str, settings: Settings = Settings(), client: str = "") -> Ticket:
        """Queue a request; raises SettingsError for bad settings, Busy when a limit is reached."""
        ticket = Ticket(Job(self.model, seed_text, settings), client)  # prepares the seed here, not in the worker
        with self.cond:
            mine = self.active[client] + self.queued[client]
            if self.stopped:
                raise Busy(STOPPED)
            if mine >= self.limits.per_client + self.limits.per_client_waiting:
                raise Busy(f"You already have {mine} generation{'s' * (mine != 1)} running or waiting: "
                           "let one finish, then try again.")
            if len(self.waiting) >= self.limits.max_waiting:
                raise Busy("The server is busy with other visitors' texts: try again in a minute.")
            self.waiting.append(ticket)
            self.queued[client] += 1
            self.cond.notify_all()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Stop a request: its rows leave the batch at the next step (or it leaves the queue)."""
        ticket.job.cancelled = True
        with self.cond:
            self.cond.notify_all()

    def _end(self, ticket: Ticket, error: Exception | None = None) -> None:
        """Release a running request's place and tell its reader (call with self.cond held)."""
        ticket.error = error
        self.active[ticket.client] -= 1
        if not self.active[ticket.client]:
            del self.active[ticket.client]
        ticket.ended.set()
        ticket.wake()

    def _end_waiting(self, ticket: Ticket, error: Exception | None = None) -> None:
        """End a request that never ran: out of the waiting line, then told as a running one would be
        (call with self.cond held)."""
        self._dequeue(ticket)
        self.active[ticket.client] += 1
        self._end(ticket, error)

    def _end_all_waiting(self) -> None:
        """The engine is stopping: every request still in the waiting line ends with Busy (call
        with self.cond held)."""
        for ticket in list(self.waiting):
            self._end_waiting(ticket, Busy(STOPPED))

    def _wait_for(self, line) -> bool:
        """Wait until `line` holds a request or the engine stops; False once stopped (call with
        self.cond held)."""
        while not self.stopped and not line:
            self.cond.wait()
        return not self.stopped

    def _dequeue(self, ticket: Ticket) -> None:
        """Take a request out of the waiting line (call with self.cond held)."""
        self.waiting.remove(ticket)
        self.queued[ticket.client] -= 1
        if not self.queued[ticket.client]:
            del self.queued[ticket.client]

    def updates(self, ticket: Ticket, interval: float = 0.04) -> Iterator[Output]:
        """The growing Output, read from this thread every `interval` s, then the final one."""
        while not ticket.ended.wait(interval):
            out = ticket.snapshot()
            if out.sampled and not out.finished:  # the finished one comes once, below
                yield out
        if ticket.error is not None:
            raise ticket.error
        yield ticket.snapshot()

    async def aupdates(self, ticket: Ticket, interval: float = 0.04) -> AsyncIterator[Output]:
        """As updates(), for an event loop: the first chars and the end arrive at once, the rest
        every `interval` s, stretched when many requests run (see spaced()). A reader that leaves
        early (a closed page) cancels the request."""
        loop, event = asyncio.get_running_loop(), asyncio.Event()
        listener = lambda: loop.call_soon_threadsafe(event.set)  # noqa: E731 (wakes this loop from the worker)
        ticket.listeners.append(listener)
        try:
            while not ticket.ended.is_set():
                out = ticket.snapshot()
                if out.sampled and not out.finished:  # the finished one comes once, below
                    yield out
                try:
                    await asyncio.wait_for(event.wait(), self.spaced(interval))
                except TimeoutError:
                    pass
                event.clear()
            if ticket.error is not None:
                raise ticket.error
            yield ticket.snapshot()
        finally:
            ticket.listeners.remove(listener)
            if not ticket.ended.is_set():
                self.cancel(ticket)

    def spaced(self, interval: float) -> float:
        """The time between one request's streamed updates: `interval` for up to STREAMS_AT_FULL_RATE
        running requests, longer beyond, so that all of them together send at most that many
        requests' worth of updates. Each update costs the web server and the client far more CPU
        than the chars it carries (the whole text is sent again); unbounded, 16 streams at 25
        updates/s took the cores the model needed. At 16 clients (bench/app_load.py's level, one
        run each) 4 requests' worth gave 2.2-2.5 requests/s and 2 gave 3.1-3.7."""
        return interval * max(1.0, sum(self.active.values()) / STREAMS_AT_FULL_RATE)

    def result(self, ticket: Ticket, timeout: float | None = None) -> Output:
        """The finished Output (blocking)."""
        if not ticket.ended.wait(timeout):
            raise TimeoutError("the generation did not finish in time")
        if ticket.error is not None:
            raise ticket.error
        return ticket.snapshot()


class Engine(_Base):
    """Continuous batching over one model: submit() from any thread, read with updates().

    Two threads: the stepper steps the batch, and the reader reads admitted requests' seeds
    (prefill) beside it, on the other core, so a burst of new requests or a long seed never
    holds up the rows already running. A request's rows join the batch once its seed is read."""

    def __init__(self, model: CharRNN, limits: Limits = Limits(), device: torch.device | str | None = None,
                 threads: int | None = 1):
        super().__init__(model.to(device) if device is not None else model, limits)
        self.batch = Batch(self.model)
        self.running: list[Ticket] = []  # in the batch
        self.to_read: deque[Ticket] = deque()  # admitted, seed not read yet
        self.reading: Ticket | None = None  # the one whose seed is being read
        self.ready: list[Ticket] = []  # seed read, joining the batch at the next step
        self.threads = threads
        self.worker = threading.Thread(target=self._work, args=(self._loop,), name="charrnn-engine", daemon=True)
        self.reader = threading.Thread(target=self._work, args=(self._read_seeds,), name="charrnn-reader",
                                       daemon=True)
        self.worker.start()
        self.reader.start()

    def close(self) -> None:
        """Stop both threads; requests still waiting or running end with Busy."""
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.worker.join(timeout=10)
        self.reader.join(timeout=10)

    def _work(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException:  # never leave readers waiting on a dead thread
            with self.cond:
                self.stopped = True
                self._stop_all()
                self.cond.notify_all()
            raise

    def _loop(self) -> None:
        """The stepper: admit waiting requests, let the read ones join, step the batch."""
        if self.threads and self.batch.device.type == "cpu":
            torch.set_num_threads(self.threads)
        while True:
            with self.cond:
                self._admit()
                while not self.stopped and not self.batch.rows and not self.ready:
                    self.cond.wait()
                    self._admit()
                if self.stopped:
                    return self._stop_all()
                joining, self.ready = self.ready, []
            for ticket in joining:
                self._join(ticket)
            self._step()

    def _read_seeds(self) -> None:
        """The reader: read each admitted request's seed, oldest first; one that fails ends alone."""
        while True:
            with self.cond:
                if not self._wait_for(self.to_read):
                    return
                self.reading = ticket = self.to_read.popleft()
            try:
                ticket.job.read_seed()
            except Exception as e:  # noqa: BLE001 (this request's failure, not the engine's)
                with self.cond:
                    self.reading = None
                    if not ticket.ended.is_set():  # (stopping ended it already)
                        self._end(ticket, e)
                continue
            with self.cond:
                self.reading = None
                if not self.stopped:  # (stopping ended it already)
                    self.ready.append(ticket)
                    self.cond.notify_all()

    def _admitted(self) -> list[Ticket]:
        return self.running + list(self.to_read) + [self.reading] * (self.reading is not None) + self.ready

    def _admit(self) -> None:
        """Move waiting requests to the reader, oldest first, while rows are free and their client
        is under its limit (call with self.cond held)."""
        free = (self.limits.max_rows - 2 * len(self._admitted())) // 2
        for ticket in list(self.waiting):
            if ticket.job.cancelled:
                self._end_waiting(ticket)
            elif free > 0 and self.active[ticket.client] < self.limits.per_client:
                self._dequeue(ticket)
                self.active[ticket.client] += 1
                self.to_read.append(ticket)
                free -= 1
        if self.to_read:
            self.cond.notify_all()

    def _join(self, ticket: Ticket) -> None:
        """Append a read request's rows to the batch; one that fails here fails alone."""
        try:
            self.batch.add(ticket.job)
        except Exception as e:  # noqa: BLE001 (whatever it is, it is this request's, not the batch's)
            with self.cond:
                self._end(ticket, e)
            return
        self.running.append(ticket)

    def _step(self) -> None:
        """One char for every row; requests that ended leave and their readers are told."""
        if not self.batch.rows:
            return
        try:
            ended = self.batch.step()
        except Exception as e:  # noqa: BLE001 (a broken batch ends its requests, not the engine)
            ended, error = [t.job for t in self.running], e
            self.batch = Batch(self.model)
        else:
            error = None
        with self.cond:
            for ticket in [t for t in self.running if t.job in ended]:
                self.running.remove(ticket)
                self._end(ticket, error)
        for ticket in self.running:
            if len(ticket.job.out.sampled) == 1:  # the first char: show it at once
                ticket.wake()

    def _stop_all(self) -> None:
        self._end_all_waiting()
        for ticket in self._admitted():
            if not ticket.ended.is_set():
                self._end(ticket, Busy(STOPPED))
        self.running, self.to_read, self.ready = [], deque(), []


class Solo(_Base):
    """The previous design, for comparison only: each request is a batch of its own 2 rows,
    stepped in a thread of its own, `concurrent` requests at a time."""

    def __init__(self, model: CharRNN, limits: Limits = Limits(), concurrent: int = 2):
        super().__init__(model, limits)
        self.workers = [threading.Thread(target=self._work, name="charrnn-solo", daemon=True) for _ in range(concurrent)]
        for worker in self.workers:
            worker.start()

    def close(self) -> None:
        """Stop the threads; requests still waiting or running end with Busy."""
        with self.cond:
            self.stopped = True
            self._end_all_waiting()
            self.cond.notify_all()
        for worker in self.workers:
            worker.join(timeout=10)

    def _work(self) -> None:
        while True:
            with self.cond:
                if not self._wait_for(self.waiting):
                    return
                ticket = self.waiting[0]
                self._dequeue(ticket)
                self.active[ticket.client] += 1
            self._run(ticket)

    def _run(self, ticket: Ticket) -> None:
        batch, error = Batch(self.model), None
        try:
            batch.add(ticket.job)
            while not batch.step():
                if self.stopped:
                    raise Busy(STOPPED)
                if len(ticket.job.out.sampled) == 1:
                    ticket.wake()
        except Exception as e:  # noqa: BLE001
            error = e
        with self.cond:
            self._end(ticket, error)
