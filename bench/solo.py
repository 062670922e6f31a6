"""The serving design the engine replaced, kept to measure one against the other: each request
alone in a batch of its own 2 rows, stepped in a thread of its own, `concurrent` at a time.

`Solo` has the engine's interface (submit, cancel, result, close, load) and the same Request and
statuses; only its worker differs. `python bench/solo.py [app flags]` serves the app with it
(what `python app.py --serving solo` did), for bench/app_load.py.
"""
import sys
import threading
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/solo.py` from anywhere

from charrnn.engine import Engine, Request, Status  # (after the path fix)
from charrnn.generate import Batch
from charrnn.model import CharRNN
from charrnn.scheduler import ROWS_PER_REQUEST, Limits

CONCURRENT = 2  # requests stepped at once, each alone
# As the old design was: no per-visitor limit, 64 requests waiting at most.
SOLO_LIMITS = Limits(max_rows=CONCURRENT * ROWS_PER_REQUEST, max_waiting=64, per_visitor=10**9,
                     per_visitor_waiting=10**9)


class Solo(Engine):
    """Each request is a batch of its own 2 rows, stepped in a thread of its own."""

    def __init__(self, model: CharRNN, limits: Limits = SOLO_LIMITS, concurrent: int = CONCURRENT):
        self.concurrent = concurrent
        self.started: deque[Request] = deque()  # admitted by the scheduler, not yet taken by a thread
        super().__init__(model, limits, threads=None)

    def _start_workers(self) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._work, args=(self._solo_loop,), name=f"charrnn-solo-{i}",
                                    daemon=True) for i in range(self.concurrent)]
        for worker in workers:
            worker.start()
        return workers

    def _solo_loop(self) -> None:
        while True:
            with self.cond:
                while not self.scheduler.closed and not self.started:
                    for request in self.scheduler.admit():
                        request.status = Status.RUNNING
                        self.started.append(request)
                    if not self.started:
                        self.cond.wait()
                if self.scheduler.closed:
                    return self._interrupt_admitted()
                request = self.started.popleft()
            self._run(request)

    def _run(self, request: Request) -> None:
        """Prefill, then step this request alone to its end, its cancelling or the close."""
        batch, status, error = Batch(self.model), None, None
        try:
            batch.add(request.job)
            while not batch.step():
                if request.status is Status.CANCELLING:
                    status = Status.CANCELLED
                    break
                if self.scheduler.closed:
                    status = Status.INTERRUPTED
                    break
                if len(request.job.out.sampled) == 1:
                    request.wake()
        except Exception as e:  # (this request's failure, not the design's)
            status, error = Status.FAILED, e
        if status is None:
            status = Status.STOPPED if request.job.stopped_by_rule() else Status.FINISHED
        with self.cond:
            if not request.status.ended:
                self._end(request, status, error)

    def _interrupt_admitted(self) -> None:
        """Closing: the admitted requests no thread has taken yet end INTERRUPTED (cond held)."""
        while self.started:
            self._end(self.started.popleft(), Status.INTERRUPTED)


def main(argv=None) -> None:
    """Serve the demo page with Solo instead of the engine (the app's own flags)."""
    from charrnn.app.server import main as serve_app  # the app (gradio) only when serving it

    serve_app(argv, engine_maker=Solo)


if __name__ == "__main__":
    main()
