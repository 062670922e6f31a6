"""Who runs next: the engine's admission, fairness and per-visitor limits, as plain code.

No threads, no locks, no torch: the engine (charrnn/engine.py) calls these methods with its own
lock held and does what they decide, so every decision can be tested by calling them (see
tests/test_scheduler.py). A request here is anything with a `visitor` attribute (the engine's
`Request`); the scheduler never looks inside it.

- A visitor (an IP address, as the web server resolves it) runs at most `per_visitor` requests
  at once and may have `per_visitor_waiting` more waiting; `max_waiting` requests wait in all.
  Beyond any of these a request is refused with `Busy`, whose `refusal` says which limit; the
  app turns that into a sentence for the page.
- `max_rows` rows step together, 2 per request (greedy and sampled).
- Fairness: when rows free up, a visitor with fewer requests running goes first, then the oldest:
  a newcomer never waits behind another visitor's second, third ... request.

`VisitorLimit` is the per-visitor accounting alone (running and waiting counts against their
limits). It knows nothing of rows, so the reading endpoints could use it as it is.

`Status` is a request's life in one vocabulary for both kinds of request, the engine's generations
and the readings (charrnn/reading.py): where it is, and once it has ended (`status.ended`) how.
"""
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum

ROWS_PER_REQUEST = 2  # greedy and sampled


class Status(Enum):
    """Where a request is, then how it ended. A generation may pass through every one (see the
    diagram in charrnn/engine.py); a reading goes WAITING -> RUNNING (-> CANCELLING) and ends
    FINISHED, CANCELLED, FAILED or REFUSED."""
    WAITING = "in the waiting line"
    PREFILLING = "admitted: the engine's prefill thread runs the model over its seed (a generation)"
    JOINING = "prefilled: its rows join the batch at the next step (a generation)"
    RUNNING = "at work: a generation's rows step with the batch, a reading reads its text"
    CANCELLING = "asked to stop: the thread that holds it ends it at its next look"
    FINISHED = "ended: it ran to its end (a generation: both rows reached their length)"
    STOPPED = "ended: a generation's row ended at its stop rule (a sentence or paragraph end)"
    CANCELLED = "ended: cancelled (its caller left) before its end"
    FAILED = "ended: its own error (a generation's seed, settings or rows; a reading's text)"
    REFUSED = "ended before it began: a limit turned it away (Busy)"
    INTERRUPTED = "ended: the engine closed while it waited or ran"

    @property
    def ended(self) -> bool:
        return self in ENDED


ENDED = {Status.FINISHED, Status.STOPPED, Status.CANCELLED, Status.FAILED, Status.REFUSED, Status.INTERRUPTED}


@dataclass(frozen=True)
class Limits:
    max_rows: int = 64  # rows stepped together: 32 requests
    max_waiting: int = 128  # requests waiting for rows; more are refused
    per_visitor: int = 2  # requests a visitor runs at once; its next ones wait their turn
    per_visitor_waiting: int = 6  # requests a visitor may have waiting; more are refused


class Refusal(Enum):
    """Why a request was turned away."""
    VISITOR_FULL = "the visitor already has as many requests running and waiting as allowed"
    LINE_FULL = "the waiting line is full"
    CLOSED = "the engine has closed"


class Busy(Exception):
    """A request refused by a limit, or cut short because the engine closed. `refusal` says which;
    `held` is how many requests the visitor had running or waiting (for VISITOR_FULL)."""

    def __init__(self, refusal: Refusal, held: int = 0):
        super().__init__(refusal.value)
        self.refusal, self.held = refusal, held


class VisitorLimit:
    """Per-visitor counts of running and waiting requests, against their limits."""

    def __init__(self, running: int, waiting: int):
        self.max_running, self.max_waiting = running, waiting
        self.running, self.waiting = Counter(), Counter()

    def held(self, visitor: str) -> int:
        return self.running[visitor] + self.waiting[visitor]

    def may_queue(self, visitor: str) -> bool:
        return self.held(visitor) < self.max_running + self.max_waiting

    def may_start(self, visitor: str) -> bool:
        return self.running[visitor] < self.max_running

    def queued(self, visitor: str) -> None:
        self.waiting[visitor] += 1

    def started(self, visitor: str) -> None:
        """One of the visitor's waiting requests starts running."""
        _decrement(self.waiting, visitor)
        self.running[visitor] += 1

    def left_line(self, visitor: str) -> None:
        """One of the visitor's waiting requests left without running."""
        _decrement(self.waiting, visitor)

    def ended(self, visitor: str) -> None:
        """One of the visitor's running requests ended."""
        _decrement(self.running, visitor)


def _decrement(counts: Counter, key: str) -> None:
    """One less for `key`; a key at zero leaves, so an idle visitor holds no entry."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class Scheduler:
    """The waiting line and the admitted (running) requests' places, with the decisions on both."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self.visitors = VisitorLimit(limits.per_visitor, limits.per_visitor_waiting)
        self.waiting = deque()  # requests not yet admitted, oldest first
        self.admitted = 0  # requests holding rows (prefilling, joining or running)
        self.closed = False

    def enqueue(self, request) -> None:
        """Put a request in the waiting line, or raise Busy saying which limit turns it away."""
        visitor = request.visitor
        if self.closed:
            raise Busy(Refusal.CLOSED)
        if not self.visitors.may_queue(visitor):
            raise Busy(Refusal.VISITOR_FULL, self.visitors.held(visitor))
        if len(self.waiting) >= self.limits.max_waiting:
            raise Busy(Refusal.LINE_FULL)
        self.waiting.append(request)
        self.visitors.queued(visitor)

    def admit(self) -> list:
        """The waiting requests that start now, in the order they should start: while rows are
        free, visitors with fewer running first, then the oldest, each visitor under its limit."""
        free = (self.limits.max_rows - ROWS_PER_REQUEST * self.admitted) // ROWS_PER_REQUEST
        chosen = []
        while len(chosen) < free:
            ready = [(self.visitors.running[r.visitor], i) for i, r in enumerate(self.waiting)
                     if self.visitors.may_start(r.visitor)]
            if not ready:
                break
            _, i = min(ready)  # the fewest running, then the oldest: counts change as each starts
            request = self.waiting[i]
            del self.waiting[i]
            self.visitors.started(request.visitor)
            chosen.append(request)
        self.admitted += len(chosen)
        return chosen

    def withdraw(self, request) -> None:
        """A waiting request leaves the line without running (cancelled, or the engine closed)."""
        self.waiting.remove(request)
        self.visitors.left_line(request.visitor)

    def release(self, request) -> None:
        """An admitted request ended: its rows and its visitor's place are free."""
        self.admitted -= 1
        self.visitors.ended(request.visitor)

    def close(self) -> list:
        """Refuse everything from now on; returns the waiting requests (each to be withdrawn)."""
        self.closed = True
        return list(self.waiting)


def wake(listeners: list) -> None:
    """Tell a request's waiting callers (the engine's and the readings') that it moved on."""
    for listener in list(listeners):
        try:
            listener()
        except RuntimeError:  # the caller's event loop has closed: nobody to tell
            pass
