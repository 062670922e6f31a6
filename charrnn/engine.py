"""One generation engine for every visitor: continuous batching of one-char steps.

A request's life, in the order this file tells it:

    submit ─▶ WAITING ─▶ PREFILLING ─▶ JOINING ─▶ RUNNING ─▶ FINISHED | STOPPED
       │         │           (any live status: cancel ─▶ CANCELLING ─▶ CANCELLED)
       ▼         ▼           (its own error ─▶ FAILED; the engine closing ─▶ INTERRUPTED)
    REFUSED   CANCELLED

(`Status`, shared with the readings of charrnn/reading.py, lives in charrnn/scheduler.py.)

1. `submit` prepares the seed and the random draws (generate.Job) in the caller's thread and asks
   the scheduler (charrnn/scheduler.py: limits, fairness, plain code) for a place in the waiting
   line; a limit refuses it with `Busy`.
2. The stepper thread asks the scheduler which waiting requests to admit while rows are free.
3. The prefill thread prefills each admitted request (runs the model over its seed), oldest
   first, beside the stepper, so a burst of arrivals or a long seed never stalls the running rows
   (in the app, under 16 visitors, a prefill inside the step loop took ~50 ms, during which no
   row moved).
4. At the next step the prefilled requests' rows (greedy and sampled, see generate.Batch) join the
   batch, and every row gets one char per step. A step at batch 2 is mostly fixed per-call
   cost, so one batch for 16 requests costs far less than 16 steps of 2 (this 2-core CPU: ~0.5
   ms for 2 rows, ~1.9 ms for 32; a GPU step costs about the same from 2 rows to hundreds).
5. A request ends when both its rows reach their length or stop rule, when it is cancelled (its
   caller left), or when it fails; its rows leave the batch at once and its caller is told.

Each row has its own temperature, top-k, top-p, stop rule and random numbers, so a request's text
depends only on its own inputs and sampling seed, never on its neighbours. The engine is the
worker; how often to show a request's progress, and what to tell the visitor, is the app's
business (it reads `Request.snapshot()` when `Request.listeners` are called, and `Busy.refusal`).
On the CPU torch runs on `threads` threads (1 by default): a one-char step is small, and on a
2-core machine the web server, the visitors' connections and the engine share the cores.
"""
import atexit
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from .generate import Batch, Job, Output, Settings
from .model import CharRNN
from .scheduler import Busy, Limits, Refusal, Scheduler, Status, wake
from .threads import threads_for


@dataclass(eq=False)
class Request:
    """A submitted generation: its Job (seed, settings, growing text), whose it is, and its status.
    The engine changes the status with its lock held; anyone may read it."""
    job: Job
    visitor: str
    status: Status = Status.WAITING
    error: Exception | None = None  # why it FAILED
    listeners: list[Callable[[], None]] = field(default_factory=list)  # called at the first char and the end
    _ended: threading.Event = field(default_factory=threading.Event)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the request has ended (True) or `timeout` s have passed (False)."""
        return self._ended.wait(timeout)

    def snapshot(self) -> Output:
        return self.job.snapshot()

    def outcome(self) -> Output:
        """The final Output of an ended request; raises its error if it FAILED, Busy if the engine
        closed on it (a CANCELLED one gives what it had)."""
        if self.status is Status.FAILED:
            raise self.error
        if self.status is Status.INTERRUPTED:
            raise Busy(Refusal.CLOSED)
        return self.snapshot()

    def wake(self) -> None:
        wake(self.listeners)


def _close_at_exit(ref: weakref.ref) -> None:
    """Stop an engine that is still generating when Python exits: a thread left inside torch at
    exit aborts the process ('terminate called without an active exception'), as Ctrl-C on
    `python app.py` during a generation did."""
    engine = ref()
    if engine is not None:
        engine.close()


class Engine:
    """Continuous batching over one model: submit() from any thread, then wait on the Request.

    The worker: a stepper thread steps the batch, a prefill thread prefills admitted requests'
    seeds beside it; both ask the scheduler what to do and hold `cond` only to change a status."""

    def __init__(self, model: CharRNN, limits: Limits = Limits(), device: torch.device | str | None = None,
                 threads: int | None = threads_for("step")):
        self.model = model.to(device) if device is not None else model
        self.scheduler = Scheduler(limits)
        self.cond = threading.Condition()
        self.threads = threads  # torch threads for the steps (None: leave torch's setting)
        self.batch = Batch(self.model)
        self.to_prefill: deque[Request] = deque()  # PREFILLING, not yet picked up by the prefill thread
        self.prefilling: Request | None = None  # PREFILLING, its seed in the model now
        self.joining: list[Request] = []  # JOINING
        self.running: list[Request] = []  # RUNNING or CANCELLING, rows in the batch
        atexit.register(_close_at_exit, weakref.ref(self))
        self.workers = self._start_workers()

    def _start_workers(self) -> list[threading.Thread]:
        loops = ((self._step_loop, "charrnn-stepper"), (self._prefill_loop, "charrnn-prefill"))
        workers = [threading.Thread(target=self._work, args=(loop,), name=name, daemon=True)
                   for loop, name in loops]
        for worker in workers:
            worker.start()
        return workers

    @property
    def load(self) -> int:
        """How many requests hold rows now (prefilling, joining or running)."""
        return self.scheduler.admitted

    # ---- 1. arrival: the caller's thread

    def submit(self, seed_text: str, settings: Settings = Settings(), visitor: str = "") -> Request:
        """Queue a request; raises SettingsError for bad settings, Busy when a limit is reached."""
        request = Request(Job(self.model, seed_text, settings), visitor)  # the seed is prepared here
        with self.cond:
            try:
                self.scheduler.enqueue(request)
            except Busy:
                request.status = Status.REFUSED
                request._ended.set()
                raise
            self.cond.notify_all()
        return request

    # ---- 2. admission: the stepper thread, cond held

    def _admit(self) -> None:
        for request in self.scheduler.admit():
            request.status = Status.PREFILLING
            self.to_prefill.append(request)
        if self.to_prefill:
            self.cond.notify_all()

    # ---- 3. prefill: the prefill thread

    def _prefill_loop(self) -> None:
        """Prefill each admitted request's seed, oldest first; one that fails ends alone."""
        while True:
            with self.cond:
                while not self.scheduler.closed and not self.to_prefill:
                    self.cond.wait()
                if self.scheduler.closed:
                    return
                self.prefilling = request = self.to_prefill.popleft()
                if request.status is Status.CANCELLING:
                    self.prefilling = None
                    self._end(request, Status.CANCELLED)
                    continue
            error = None
            try:
                request.job.prefill()
            except Exception as e:  # (this request's failure, not the engine's)
                error = e
            with self.cond:
                self.prefilling = None
                self._after_prefill(request, error)

    def _after_prefill(self, request: Request, error: Exception | None) -> None:
        """A prefilled request joins the batch at the next step, unless it failed, was cancelled or was
        interrupted meanwhile (cond held)."""
        if request.status.ended:  # the engine closed on it
            return
        if request.status is Status.CANCELLING:
            self._end(request, Status.CANCELLED)
        elif error is not None:
            self._end(request, Status.FAILED, error)
        else:
            request.status = Status.JOINING
            self.joining.append(request)
            self.cond.notify_all()

    # ---- 4. joining and stepping: the stepper thread

    def _step_loop(self) -> None:
        """Admit waiting requests, let the prefilled ones join, drop the cancelled ones, step the batch."""
        if self.threads and self.batch.device.type == "cpu":
            torch.set_num_threads(self.threads)
        while True:
            with self.cond:
                self._admit()
                while not self.scheduler.closed and not self.running and not self.joining:
                    self.cond.wait()
                    self._admit()
                if self.scheduler.closed:
                    return self._interrupt_admitted()
                joining, self.joining = self.joining, []
                cancelling = [r for r in self.running if r.status is Status.CANCELLING]
            for request in joining:
                self._join(request)
            if cancelling:
                self._leave(cancelling, Status.CANCELLED)
            self._step()

    def _join(self, request: Request) -> None:
        """Append a prefilled request's rows to the batch; one that fails here fails alone."""
        if request.status is Status.CANCELLING:
            with self.cond:
                return self._end(request, Status.CANCELLED)
        try:
            self.batch.add(request.job)
        except Exception as e:  # (whatever it is, it is this request's, not the batch's)
            with self.cond:
                return self._end(request, Status.FAILED, e)
        with self.cond:
            if request.status is Status.JOINING:  # (else it is CANCELLING: dropped before the step)
                request.status = Status.RUNNING
            self.running.append(request)

    def _step(self) -> None:
        """One char for every row; requests whose rows all ended leave, and their callers are told."""
        if not self.batch.rows:
            return
        try:
            ended_jobs = set(self.batch.step())
        except Exception as e:  # (a broken batch ends its requests, not the engine)
            self.batch = Batch(self.model)
            return self._leave(list(self.running), Status.FAILED, e)
        ended = [r for r in self.running if r.job in ended_jobs]
        for request in ended:
            self._leave([request], Status.STOPPED if request.job.stopped_by_rule() else Status.FINISHED)
        for request in self.running:
            if len(request.job.out.sampled) == 1:  # the first char: show it at once
                request.wake()

    def _leave(self, requests: list[Request], status: Status, error: Exception | None = None) -> None:
        """Take these running requests' rows out of the batch (any still there) and end them."""
        self.batch.remove([r.job for r in requests])
        with self.cond:
            for request in requests:
                self.running.remove(request)
                if not request.status.ended:
                    self._end(request, status, error)

    # ---- 5. the end: any thread

    def _end(self, request: Request, status: Status, error: Exception | None = None) -> None:
        """Set a request's final status, free its place and tell its caller (cond held)."""
        if request.status is Status.WAITING:
            self.scheduler.withdraw(request)
        else:  # it was admitted
            self.scheduler.release(request)
        request.status, request.error = status, error
        request._ended.set()
        request.wake()
        self.cond.notify_all()  # its place is free: the stepper may admit the next

    def cancel(self, request: Request) -> None:
        """Stop a request: a waiting one ends now; an admitted one at its thread's next look
        (its rows leave the batch before the next step)."""
        with self.cond:
            if request.status is Status.WAITING:
                self._end(request, Status.CANCELLED)
            elif not request.status.ended:
                request.status = Status.CANCELLING
            self.cond.notify_all()

    def result(self, request: Request, timeout: float | None = None) -> Output:
        """The final Output (blocking); raises the request's error, or Busy if the engine closed."""
        if not request.wait(timeout):
            raise TimeoutError("the generation did not finish in time")
        return request.outcome()

    def close(self) -> None:
        """Stop the workers; requests still waiting or running end INTERRUPTED."""
        with self.cond:
            self._interrupt_waiting()
            self.cond.notify_all()
        for worker in self.workers:
            worker.join(timeout=10)

    def _work(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException:  # never leave callers waiting on a dead thread
            with self.cond:
                self._interrupt_waiting()
                self._interrupt_admitted()
                self.cond.notify_all()
            raise

    def _interrupt_waiting(self) -> None:
        """The engine is closing: the scheduler refuses from now on, and the waiting line ends
        INTERRUPTED (cond held)."""
        for request in self.scheduler.close():
            self._end(request, Status.INTERRUPTED)

    def _interrupt_admitted(self) -> None:
        """The engine is closing: every admitted request ends INTERRUPTED (cond held)."""
        prefilling = [self.prefilling] if self.prefilling is not None else []
        admitted = self.running + list(self.to_prefill) + prefilling + self.joining
        for request in admitted:
            if not request.status.ended:
                self._end(request, Status.INTERRUPTED)
        self.running, self.to_prefill, self.joining = [], deque(), []
