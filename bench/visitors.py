"""Fair to every visitor (issue 21 items 1 and 2), in one run: while one visitor floods the app
with unread 20,000-char adaptive `/score` requests, how long another visitor's `/generate` and a
third visitor's short `/score` take, as multiples of their time alone.

`python app.py` on a loopback port; visitors are told apart by X-Forwarded-For (uvicorn trusts
127.0.0.1). Rounds alternate: the two requests alone, then the same two during a flood (a burst of
`--flood` POSTs to /gradio_api/call/score whose results nobody reads, topped up every second),
then the flood stops and the flooder's readings drain before the next round. Also counted: how
many of the burst's POSTs got 503 "Queue is full" (the defect: 257 filled Gradio's shared queue).

    flock /work/cpu.lock python bench/visitors.py                  # ~4 min
    python bench/visitors.py --weights DIR --chars 500 --rounds 1 --flood 20 --results /tmp/R.md   # smoke
"""
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # so `python bench/x.py` finds bench.common
from gradio_client import Client

from bench import common

FLOODER, WRITER, READER = "6.6.6.6", "2.2.2.2", "3.3.3.3"
SHORT = "Dijo Sancho: ¿qué gigantes?"
LONG_TEXT = ("En un lugar de la Mancha, de cuyo nombre no quiero acordarme, no ha mucho tiempo que vivía "
             "un hidalgo. ")


def post(url: str, path: str, data: list, visitor: str) -> tuple[int, str]:
    """One POST whose answer (an event id, or an error) is all that is read."""
    where = urlparse(url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
    conn.request("POST", path, body=json.dumps({"data": data}).encode(),
                 headers={"Content-Type": "application/json", "X-Forwarded-For": visitor})
    response = conn.getresponse()
    answer = (response.status, response.read().decode())
    conn.close()
    return answer


class Flood:
    """A visitor who sends `burst` unread adaptive readings at once, then `top_up` more every second."""

    def __init__(self, url: str, text: str, burst: int, top_up: int = 5):
        self.url, self.text, self.burst, self.top_up = url, text, burst, top_up
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def send(self, n: int) -> None:
        for _ in range(n):
            self.statuses.append(post(self.url, "/gradio_api/call/score", [self.text, True], FLOODER)[0])

    def run(self) -> None:
        self.send(self.burst)
        while not self.stop.wait(1.0):
            self.send(self.top_up)

    def __enter__(self) -> "Flood":
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        while len(self.statuses) < self.burst:  # the burst is in before anything is measured
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def visitor(url: str, address: str) -> Client:
    return Client(url, analytics_enabled=False, verbose=False, headers={"X-Forwarded-For": address})


def drained(url: str, timeout: float = 300) -> float:
    """Wait until the flooder holds no reading (its own short reading is then accepted); seconds waited."""
    client, t0 = visitor(url, FLOODER), time.time()
    while time.time() - t0 < timeout:
        try:
            client.predict(SHORT, False, api_name="/score")
            return time.time() - t0
        except Exception:
            time.sleep(1.0)
    raise TimeoutError("the flooder's readings did not drain")


def measure(args) -> dict:
    text = (LONG_TEXT * (args.chars // len(LONG_TEXT) + 1))[:args.chars]
    times = {k: [] for k in ("generate_alone", "generate_flood", "short_alone", "short_flood")}
    statuses, drains = [], []
    with common.App(args.weights) as app:
        writer, reader, flooder = (visitor(app.url, a) for a in (WRITER, READER, FLOODER))
        seed = "En un lugar de la Mancha"
        generate = lambda: writer.predict(seed, args.length, 0.8, 0, 1.0, 1, "don't stop",  # noqa: E731
                                          api_name="/generate")
        short = lambda: reader.predict(SHORT, False, api_name="/score")  # noqa: E731
        generate(), short()  # warm-up
        long_alone = timed(lambda: flooder.predict(text, True, api_name="/score"))
        for _ in range(args.rounds):
            times["generate_alone"].append(timed(generate))
            times["short_alone"].append(timed(short))
            with Flood(app.url, text, args.flood) as flood:
                time.sleep(0.5)  # the flooder's first reading is under way
                times["generate_flood"].append(timed(generate))
                times["short_flood"].append(timed(short))
            statuses += flood.statuses
            drains.append(drained(app.url))
    return dict(times=times, long_alone=long_alone, statuses=statuses, drains=drains, text_chars=len(text))


def vector_flags() -> str:
    """Whether the CPU has the flags that decide torch's CPU speed here: avx2, avx512f, avx512_bf16, amx."""
    flags = set(common.lscpu_line().partition("flags: ")[2].split())
    return ", ".join(f"{f} {'yes' if any(x.startswith(f) for x in flags) else 'no'}"
                     for f in ("avx2", "avx512f", "avx512_bf16", "amx"))


def report(args, run: dict) -> str:
    t = {k: statistics.median(v) for k, v in run["times"].items()}
    rows = [[f"`/generate`, {args.length} chars (another visitor)", f"{t['generate_alone']:,.0f}",
             f"{t['generate_flood']:,.0f}", f"{t['generate_flood'] / t['generate_alone']:.1f}x"],
            [f"`/score`, {len(SHORT)} chars, static (a third visitor)", f"{t['short_alone']:,.0f}",
             f"{t['short_flood']:,.0f}", f"{t['short_flood'] / t['short_alone']:.1f}x"]]
    md = common.table(["request", "alone (median ms)", "during the flood (median ms)", "ratio"], rows)
    full = sum(s == 503 for s in run["statuses"])
    notes = (f"The flood: one visitor's unread adaptive `/score` requests of {run['text_chars']:,} chars, a "
             f"burst of {args.flood} then 5 a second; {len(run['statuses']):,} POSTs in all, {full} answered "
             f"503 \"Queue is full\" (each accepted at once; the app admits 1 reading and 2 waiting per "
             f"visitor and answers the rest with its sentence). One such reading alone: "
             f"{run['long_alone'] / 1000:.1f} s. After each flood the flooder's readings drained in "
             f"{', '.join(f'{d:.0f}' for d in run['drains'])} s. {args.rounds} rounds, each the two requests "
             f"alone then during a flood, medians over rounds; other processes shared the machine, so only "
             f"the ratios within this run mean something.\n\nCPU: {common.lscpu_line()} ({vector_flags()})")
    what = (f"While one visitor floods `python app.py` with unread {run['text_chars']:,}-char adaptive "
            "`/score` requests (issue 21 items 1 and 2), another visitor's `/generate` and a third visitor's "
            "short `/score`, "
            "as multiples of their time alone, in one run.")
    return common.section("Fair to every visitor: a reading flood", what, md, notes)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--chars", type=int, default=20_000, help="chars of each flooding reading")
    p.add_argument("--flood", type=int, default=300, help="unread POSTs in each flood's first burst")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--length", type=int, default=300, help="chars the other visitor generates")
    return common.measure_and_write("visitors", p, argv, measure, report)


if __name__ == "__main__":
    sys.exit(main())
