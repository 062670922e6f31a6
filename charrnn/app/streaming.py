"""A generation's stream to the page: how often the page hears of a request's progress, and what
the visitor is told when the engine turns a request away. The engine (charrnn/engine.py) only
generates; these are the page's decisions."""
import asyncio
from typing import AsyncIterator

from charrnn.engine import Engine, Request
from charrnn.generate import Output
from charrnn.scheduler import Busy, Refusal

STREAM_INTERVAL = 0.04  # s between a request's streamed updates: smooth to the eye, light on the queue
# Streams that update every STREAM_INTERVAL; beyond this many running requests each is spaced out.
STREAMS_AT_FULL_RATE = 2


def busy_sentence(busy: Busy, noun: str = "generation", worker: str = "generator") -> str:
    """What the page says when a request (a `noun`: generation, reading) is turned away, or cut
    short by its `worker` closing."""
    if busy.refusal is Refusal.VISITOR_FULL:
        return (f"You already have {busy.held} {noun}{'s' * (busy.held != 1)} running or waiting: "
                "let one finish, then try again.")
    if busy.refusal is Refusal.LINE_FULL:
        return "The server is busy with other visitors' texts: try again in a minute."
    return f"The {worker} has stopped; reload the page."


def spaced(interval: float, running: int) -> float:
    """The time between one request's streamed updates: `interval` for up to STREAMS_AT_FULL_RATE
    running requests, longer beyond, so that all of them together send at most that many
    requests' worth of updates. Each update costs the web server and the client far more CPU
    than the chars it carries (the whole text is sent again); unbounded, 16 streams at 25
    updates/s took the cores the model needed. At 16 visitors (bench/app_load.py's level, one
    run each) 4 requests' worth gave 2.2-2.5 requests/s and 2 gave 3.1-3.7."""
    return interval * max(1.0, running / STREAMS_AT_FULL_RATE)


async def paced_updates(engine: Engine, request: Request, interval: float = STREAM_INTERVAL
                        ) -> AsyncIterator[Output]:
    """The growing Output for an event loop: the first chars and the end arrive at once (the
    engine calls the request's listeners then), the rest every spaced() s. Raises the request's
    error, or Busy if the engine closed. A caller that leaves early (a closed page) cancels it."""
    loop, event = asyncio.get_running_loop(), asyncio.Event()

    def listener():  # called from the engine's threads: wake this loop
        loop.call_soon_threadsafe(event.set)

    request.listeners.append(listener)
    try:
        while not request.status.ended:
            out = request.snapshot()
            if out.sampled and not out.finished:  # the finished one comes once, below
                yield out
            try:
                await asyncio.wait_for(event.wait(), spaced(interval, engine.load))
            except TimeoutError:
                pass
            event.clear()
        yield request.outcome()
    finally:
        request.listeners.remove(listener)
        if not request.status.ended:
            engine.cancel(request)
