"""What each event of the page does with its raw inputs (preprocess=False): check them, hand the
work to the engine or the readers, and turn every user mistake into a gr.Error sentence."""
import asyncio
import random
import time
from contextlib import aclosing
from dataclasses import replace
from typing import Iterator

import gradio as gr

from charrnn import inside
from charrnn.adaptive import Adapt
from charrnn.engine import Engine
from charrnn.generate import Bounds, SettingsError, check_seed_text, check_settings, mapping_notices, stream
from charrnn.model import CharRNN
from charrnn.reading import Readers
from charrnn.scheduler import Busy, Status
from charrnn.serving import client_key
from charrnn.snapshots import Snapshot, find_snapshots
from charrnn.style import read_passage
from charrnn.text_reading import read
from charrnn.weights import first_line

from . import views
from .streaming import STREAM_INTERVAL, busy_sentence, paced_updates

LENGTH = (50, 1000, 300)  # slider minimum, maximum, default
TEMPERATURE = (0.1, 2.0, 0.8)
TOP_P = (0.05, 1.0, 1.0)
STOP_AT = {"don't stop": None, "end of sentence": "sentence", "end of paragraph": "paragraph"}
NO_STOP = "don't stop"  # what the Watch and Write tabs ask for: the whole length
READ_LIMIT = 20_000  # chars per text in the Read and Look inside tabs: ~10 s of adaptive reading here


def bounds(vocab_size: int) -> Bounds:
    """The settings the page accepts: its sliders' ranges, -1 for a random sampling seed."""
    return Bounds(length=LENGTH[:2], temperature=TEMPERATURE[:2], top_k=(0, vocab_size), top_p=TOP_P[:2],
                  sampling_seed=(-1, 2**31 - 1), fresh_sampling_seed=-1, stops=tuple(STOP_AT.items()))


def refusal(message: str) -> gr.Error:
    """A user's mistake or a limit, said in a sentence; not a server fault, so no traceback in the log."""
    return gr.Error(message, print_exception=False)


def make_engine(model: CharRNN) -> Engine:
    """The page's one generation engine (bench/solo.py serves the page with another design)."""
    return Engine(model)


def generation(engine: Engine | None, accepted: Bounds, error: str | None, resample: bool):
    """The handler of Generate (greedy, sampled and views) and of Re-sample (sampled and views, with
    a fresh sampling seed). Raw values arrive (preprocess=False); bad ones get a sentence."""

    async def run(seed, length, temperature, top_k, top_p, sampling_seed, stop_at, request: gr.Request):
        if engine is None:
            raise refusal(f"No model is loaded: {error}")
        try:
            settings = check_settings(length, temperature, top_k, top_p, None if resample else sampling_seed,
                                      stop_at, accepted)
            generating = engine.submit(check_seed_text(seed), settings, visitor=client_key(request))
        except SettingsError as e:
            raise refusal(str(e)) from None
        except Busy as e:
            raise refusal(busy_sentence(e)) from None
        start = time.perf_counter()
        try:
            async for out in paced_updates(engine, generating):
                shown = (out.seed + out.sampled, views.surprise_html(out), views.candidates(out),
                         views.info(out, time.perf_counter() - start))
                yield shown if resample else (out.seed + out.greedy, *shown)
        except Busy as e:
            raise refusal(busy_sentence(e)) from None
        except Exception as e:  # one request's failure, said in a line; the engine goes on
            raise gr.Error(f"The generation failed: {first_line(e)}") from None

    return run


def sampled_label(temperature):
    """The sampled box's label follows the temperature; a bad value is left to the generation's
    own error message."""
    try:
        return gr.update(label="Sampled (temperature "
                               f"{check_settings(300, temperature, 0, 1.0).temperature:g})")
    except SettingsError:
        return gr.update()


def read_input(model: CharRNN | None, error: str | None, text) -> str:
    """The text of a Read / Look inside request, or a refusal that says what is wrong with it."""
    if model is None:
        raise refusal(f"No model is loaded: {error}")
    if not isinstance(text, str):
        raise refusal("The text must be a string.")
    if not text.strip():
        raise refusal("Paste a text to read first (or pick one of the passages).")
    if len(text) > READ_LIMIT:
        raise refusal(f"The text is {len(text):,} characters long; the limit is {READ_LIMIT:,}. "
                      "Paste a shorter passage.")
    return text


async def served(readers: Readers, request: gr.Request, work, progress, what: str):
    """Run `work(tick)` as this visitor's reading: refused at once past a limit, then progress
    while it waits and runs. Yields None until the result, which it yields last. The caller
    yields gr.skip() for each None: that is when Gradio notices a caller who has gone, and then
    closing this generator cancels the reading (charrnn.reading)."""
    try:
        job = readers.submit(client_key(request), work)
    except Busy as e:
        raise refusal(busy_sentence(e, "reading", "reader")) from None
    async with aclosing(readers.watch(job)) as updates:
        async for job in updates:
            if job.status is Status.WAITING:
                progress(0, desc=f"Waiting: {readers.ahead(job)} reading(s) ahead of yours")
            elif job.total:
                progress((job.chars_read, job.total), desc=what, unit="chars")
            if not job.status.ended:
                yield None
    if job.status is Status.CANCELLED:
        raise refusal("The reading was stopped.")
    if isinstance(job.error, ValueError):  # the text itself: e.g. fewer known chars than needed
        raise refusal(f"{str(job.error)[:1].upper()}{str(job.error)[1:]}.")
    if job.error is not None:
        raise gr.Error(f"The reading failed: {first_line(job.error)}") from None
    yield job.result


def scorer(model: CharRNN | None, error: str | None, readers: Readers, reference: str | None):
    """The handler of Read (/score): the text coloured by surprise, totals, JSON and surprising words.
    `reference`: the model's own validation score to compare with (views.card_reference), or None."""

    async def score(text, adapt, request: gr.Request, progress=gr.Progress()):
        text = read_input(model, error, text)
        if not isinstance(adapt, bool):
            raise refusal("'Adapt as it reads' must be true or false.")
        settings = Adapt() if adapt else None

        def work(tick):  # in the reading's thread: nothing heavy happens before admission
            mapped, subs = model.vocab.map_unknown(text)  # as a seed is mapped: '—' -> '–'
            return read(model, mapped, settings, tick=tick), subs

        async with aclosing(served(readers, request, work, progress, "Reading")) as results:
            async for result in results:
                if result is None:
                    yield gr.skip()
        reading, subs = result
        styles = views.reading_styles(reading.text, reading.logprobs, set(model.vocab.stoi))
        summary = reading.score.summary(sum(reading.unknown.values()))
        totals = views.read_totals(summary, adapt, reference, mapping_notices(subs), reading.unknown)
        words = [[w, round(bits, 1)] for w, bits in reading.surprising_words()]
        yield views.spans_html(reading.text, styles, "text coloured by surprise"), totals, summary, words

    return score


def whole_unit(model: CharRNN, unit) -> int:
    """The unit number of an /inside request, or a refusal."""
    last = inside.num_units(model) - 1
    whole = ((isinstance(unit, int) and not isinstance(unit, bool))
             or (isinstance(unit, float) and unit.is_integer()))
    if not whole or not 0 <= unit <= last:
        raise refusal(f"The unit must be a whole number from 0 to {last:,}.")
    return int(unit)


def looker(model: CharRNN | None, error: str | None, readers: Readers, passages: tuple[str, ...] = ()):
    """The handler of Show (/inside): the text coloured by one unit, and the units ranked on the
    corpus's own `passages` (on the text itself for a model without any)."""

    async def look(text, unit, request: gr.Request, progress=gr.Progress()):
        text = read_input(model, error, text)
        unit = whole_unit(model, unit)

        def work(tick):  # in the reading's thread
            mapped, subs = model.vocab.map_unknown(text)  # as a seed is mapped: '—' -> '–'
            return inside.look(model, mapped, unit, tick, passages=passages), subs

        async with aclosing(served(readers, request, work, progress, "Reading the units")) as results:
            async for result in results:
                if result is None:
                    yield gr.skip()
        seen, subs = result
        styles = [views.surprise_style(None) if v is None else views.activation_style(v) for v in seen.values]
        ranking = [[r["feature"], r["unit"], r["name"], r["correlation"]] for r in seen.ranking]
        info = (f"Unit **{unit}** = {inside.unit_name(model, unit)}: blue where it is negative, red where "
                "positive (scaled to its largest value on this text). The table ranks units on "
                f"{seen.ranked_on}.")
        info = "\n\n".join([info] + [f"⚠️ {n}" for n in mapping_notices(subs)])
        yield views.spans_html(seen.text, styles, "text coloured by a unit"), info, ranking

    return look


# ---- Watch it learn, Write like this -----------------------------------------------------------

def snapshot_engines(model: CharRNN | None, source: str, engine: Engine | None,
                     log=print) -> list[tuple[Snapshot, Engine]]:
    """An engine for each of the model's snapshots, earliest first; the best one (the served
    weights themselves) is the page's own engine. [] for a model without snapshots."""
    if model is None:
        return []
    device = next(model.parameters()).device
    return [(s, engine if "best" in s.moments and engine is not None else Engine(s.load(device)))
            for s in find_snapshots(source, log)]


def watcher(shots: list[tuple[Snapshot, Engine]], accepted: Bounds, error: str | None):
    """The handler of Watch it learn (/watch): every snapshot continues the same seed with the same
    sampling seed through its engine; their texts side by side, streamed, and as data."""

    async def watch(seed, length, temperature, sampling_seed, request: gr.Request):
        if not shots:
            raise refusal(f"No model is loaded: {error}" if error else views.NO_SNAPSHOTS)
        try:
            settings = check_settings(length, temperature, 0, 1.0, sampling_seed, NO_STOP, accepted)
            if settings.sampling_seed is None:  # one sampling seed for every snapshot, reported
                settings = replace(settings, sampling_seed=random.randrange(2**31))
            generating = submit_all(shots, check_seed_text(seed), settings, client_key(request))
        except SettingsError as e:
            raise refusal(str(e)) from None
        except Busy as e:
            raise refusal(busy_sentence(e)) from None
        snapshots = [s for s, _ in shots]
        try:
            while not all(r.status.ended for r in generating):
                outs = [r.snapshot() for r in generating]
                yield views.watch_html(snapshots, outs), views.watch_rows(snapshots, outs)
                await asyncio.sleep(STREAM_INTERVAL)
            outs = [r.outcome() for r in generating]  # raises a request's error, or Busy
            yield views.watch_html(snapshots, outs), views.watch_rows(snapshots, outs)
        except Busy as e:
            raise refusal(busy_sentence(e)) from None
        except Exception as e:  # a request's failure, said in a line; the engines go on
            raise gr.Error(f"The generation failed: {first_line(e)}") from None
        finally:  # a page closed early: its rows leave every engine
            for (_, engine), generated in zip(shots, generating):
                engine.cancel(generated)

    return watch


def submit_all(shots: list[tuple[Snapshot, Engine]], seed: str, settings, visitor: str) -> list:
    """One request per snapshot's engine; if one is refused, the others are withdrawn."""
    requests = []
    try:
        for _, engine in shots:
            requests.append(engine.submit(seed, settings, visitor=visitor))
    except (SettingsError, Busy):
        for (_, engine), request in zip(shots, requests):
            engine.cancel(request)
        raise
    return requests


def writer(model: CharRNN | None, accepted: Bounds, error: str | None, readers: Readers):
    """The handler of Write like this (/write_like): read the passage adapting (on a copy) as this
    visitor's reading (charrnn.reading: its limits and turns), then continue the seed in its style,
    greedy and sampled, streamed; how much it adapted, as text and data."""

    async def write(passage, seed, length, temperature, sampling_seed, request: gr.Request,
                    progress=gr.Progress()):
        passage = read_input(model, error, passage)
        try:
            settings = check_settings(length, temperature, 0, 1.0, sampling_seed, NO_STOP, accepted)
            seed = check_seed_text(seed)
        except SettingsError as e:
            raise refusal(str(e)) from None
        yield "", "", views.adaptation(None), None
        reading = served(readers, request, lambda tick: read_passage(model, passage, tick=tick), progress,
                         "Reading the passage")
        async with aclosing(reading) as results:
            async for result in results:
                if result is None:
                    yield gr.skip()
        adapted, how = result
        async for out in in_a_thread(stream(adapted, seed, settings, interval=STREAM_INTERVAL)):
            yield out.seed + out.greedy, out.seed + out.sampled, views.adaptation(how, out), how.summary()

    return write


async def in_a_thread(updates: Iterator):
    """A generator's items, each computed in a worker thread, so the event loop stays free."""
    while (item := await asyncio.to_thread(next, updates, None)) is not None:
        yield item
