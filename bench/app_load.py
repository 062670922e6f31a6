"""The app under load, new design against old in one run: `python app.py` (batching engine) and
`python bench/solo.py` (the page served by the old design: each request alone at batch 2, two at a
time) on loopback ports, beside the bare model's own limit (a torch.lstm_cell loop over 64 rows),
driven by N concurrent gradio_client clients through the `generate` endpoint, each client with its
own address (X-Forwarded-For, as visitors behind a proxy look). Reports latency to the first
streamed chunk and to completion, throughput and errors per level; then two abuse scenarios:
one client posting unread requests (the backlog), and oversized request bodies (memory).

    flock /work/cpu.lock python bench/app_load.py          # ~6 min
    python bench/app_load.py --weights DIR --levels 1,2 --requests 2 --length 50 --results /tmp/R.md   # smoke
"""
import http.client
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# `python bench/x.py`: imports from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from gradio_client import Client

from bench import common
from charrnn.generate import make_step
from charrnn.hub import load_model

SEEDS = ["En un lugar de la Mancha, de cuyo nombre no quiero acordarme,", "Dijo don Quijote a su escudero:",
         "En esto, descubrieron treinta o cuarenta molinos de viento", "Sancho Panza"]
POLL_S = 0.01  # how often a client looks for the first streamed chunk: the resolution of that latency
CEILING_LEVEL, CEILING_ROWS = 32, 64  # 32 visitors fill the engine's 64 rows: compared with the bare model's
DESIGNS = {"engine": "one batch for every request (`python app.py`)",
           "solo": "old design: each request alone, 2 at a time (`python bench/solo.py`)"}
SCRIPTS = {"engine": "app.py", "solo": "bench/solo.py"}  # each takes the app's flags


def client(url: str, i: int) -> Client:
    """A client seen by the app as visitor i (uvicorn trusts X-Forwarded-For from 127.0.0.1)."""
    return Client(url, verbose=False, analytics_enabled=False, download_files=False,
                  headers={"X-Forwarded-For": f"10.0.{i // 250}.{i % 250 + 1}"})


def one_request(c: Client, i: int, length: int, deadline: float) -> dict:
    """One streamed generation; times to the first chunk and to the end, or the error."""
    t0 = time.perf_counter()
    # The endpoint's inputs: seed, length, temperature, top-k, top-p, sampling seed, stop at.
    job = c.submit(SEEDS[i % len(SEEDS)], length, 0.8, 0, 1.0, i, "don't stop", api_name="/generate")
    first = None
    try:
        while first is None and not job.done():
            if job.outputs():
                first = time.perf_counter() - t0
            elif time.perf_counter() > deadline:
                raise TimeoutError("no chunk before the deadline")
            else:
                time.sleep(POLL_S)
        greedy = job.result(timeout=max(0.1, deadline - time.perf_counter()))[0]
        total = time.perf_counter() - t0
        if len(greedy) < length:  # the greedy box holds seed + continuation; no stop was asked for
            raise RuntimeError(f"incomplete: {len(greedy)} chars for length {length}")
        return dict(first=first if first is not None else total, total=total, error=None)
    except Exception as e:  # the app's gr.Error, a timeout, a dropped connection: all count as errors
        job.cancel()
        return dict(first=None, total=None, error=f"{type(e).__name__}: {e}"[:200])


def run_level(url: str, clients: int, length: int, requests: int | None, seconds: float,
              timeout: float) -> dict:
    """`clients` threads, each its own visitor, send one request after another: `requests` in all,
    or (requests=None) as many as they can start in `seconds`. Nothing may take past `timeout` s."""
    pool = [client(url, i) for i in range(clients)]
    results, lock, counter = [], threading.Lock(), iter(range(requests if requests else 10**9))
    t0 = time.perf_counter()
    stop_sending, deadline = t0 + (seconds if not requests else timeout), t0 + timeout

    def worker(c):
        while time.perf_counter() < stop_sending:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            r = one_request(c, i, length, deadline)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=worker, args=(c,)) for c in pool]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for c in pool:
        c.close()
    missing = (requests or len(results)) - len(results)  # never sent: the level ran out of time
    ok = [r for r in results if r["error"] is None]
    errors = [r["error"] for r in results if r["error"]] + ["not sent before the time limit"] * missing
    return dict(clients=clients, requests=len(results) + missing, ok=len(ok), errors=errors, wall=wall,
                first=[r["first"] for r in ok], total=[r["total"] for r in ok])


def post(url: str, body: bytes, declared: int | None = None, ip: str = "10.9.9.9") -> tuple[int, str]:
    """POST to /gradio_api/call/generate as a raw HTTP client; (status, body) or (0, what went wrong)."""
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", "/gradio_api/call/generate")
        for k, v in {"Content-Type": "application/json", "X-Forwarded-For": ip,
                     "Content-Length": str(declared or len(body))}.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            conn.send(body)
        except OSError:  # the server may answer and close before it has read a huge body
            pass
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as e:
        return 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def backlog(url: str, posts: int, length: int) -> dict:
    """One visitor posts `posts` requests of 1000 chars and never reads them; then another
    visitor's normal request is timed (three times, the worst is reported)."""
    data = ["En un lugar de la Mancha", 1000, 0.8, 0, 1.0, -1, "don't stop"]
    accepted = sum(post(url, json.dumps({"data": data}).encode())[0] == 200 for _ in range(posts))
    other = client(url, 5000)
    times = [one_request(other, i, length, time.perf_counter() + 60) for i in range(3)]
    other.close()
    errors = [t["error"] for t in times if t["error"]]
    return dict(accepted=accepted, worst=max((t["total"] for t in times if t["total"]), default=None),
                errors=errors)


def oversized(url: str, pid: int, count: int, seed_mb: float) -> dict:
    """`count` requests with a seed of `seed_mb` MB; then 30 read requests with a ~60 KB seed (just
    under the limit), 5 at a time; then one declaring a 200 MB body. The app's RSS around each."""
    rss = [common.rss_mb(pid)["VmRSS"]]
    big = json.dumps({"data": ["a" * int(seed_mb * 2**20), 50, 0.8, 0, 1.0, 1, "don't stop"]}).encode()
    statuses = [post(url, big)[0] for _ in range(count)]
    rss.append(common.rss_mb(pid)["VmRSS"])
    near_seed = "de la Mancha " * 4700  # 61,100 chars: the body stays under 64 KB

    def read_near(i):
        c = client(url, 7000 + i)
        ok = [len(c.predict(near_seed, 50, 0.8, 0, 1.0, 1, "don't stop", api_name="/generate")[0]) > 0
              for _ in range(6)]
        c.close()
        return ok

    with ThreadPoolExecutor(5) as pool:
        near_ok = sum(sum(ok) for ok in pool.map(read_near, range(5)))
    rss.append(common.rss_mb(pid)["VmRSS"])
    t0 = time.perf_counter()
    huge_status, huge_text = post(url, b"a" * 2**20, declared=200 * 2**20)  # declares 200 MB, sends 1 MB
    huge_s = time.perf_counter() - t0
    return dict(rss=rss, statuses=statuses, near_ok=near_ok, near_bytes=len(near_seed),
                huge=(huge_status, huge_text[:160], huge_s))


def pct(xs: list[float], q: int) -> float | None:
    """The q-th percentile in s (None without data); quantiles interpolates between samples."""
    if not xs:
        return None
    return xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def ms(x: float | None) -> str:
    return "—" if x is None else f"{x * 1000:,.0f}"


def bare_ceiling(weights: str, rows: int = CEILING_ROWS, seconds: float = 3.0) -> float:
    """The model's own limit: chars/s of a bare torch.lstm_cell loop (generate.make_step, the
    engine's step without sampling, streaming or web server) over `rows` rows on one thread, in
    this process. Measured beside the app's levels, so both see the same busy machine."""
    model, threads = load_model(weights, "cpu"), torch.get_num_threads()
    step = make_step(model)
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            ids = torch.zeros(rows, dtype=torch.long)  # (B,)
            zeros = lambda: torch.zeros(rows, model.rnn.hidden_size)  # noqa: E731 (B, H)
            layers = [(zeros(),
                       zeros()) if model.cell == "lstm" else zeros() for _ in range(model.rnn.num_layers)]
            for _ in range(10):  # warm-up
                logits, layers = step(ids, layers)
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                logits, layers = step(logits.argmax(-1), layers)  # (B, V) -> (B,)
                steps += 1
            return steps * rows / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def measure(design: str, args, levels: list[int], timed: set[int]) -> dict:
    """Start the app with this design and run every level and scenario against it."""
    with common.App(args.weights, script=SCRIPTS[design]) as app:
        print(f"{design}: app up on {app.url} in {app.start_s:.1f} s", flush=True)
        mem_start = common.rss_mb(app.proc.pid)
        run_level(app.url, 1, args.length, 1, 0, args.timeout)  # untimed: the first request pays lazy setup
        stats = []
        for n in levels:
            requests = None if n in timed else (args.requests or max(16, 3 * n))
            before = bare_ceiling(args.weights) if n == CEILING_LEVEL and design == "engine" else None
            s = run_level(app.url, n, args.length, requests, args.duration, args.timeout)
            if before is not None:  # the ceiling just before and just after this level
                s["ceiling"] = (before, bare_ceiling(args.weights))
            stats.append(s)
            print(f"  {n} clients: {s['ok']}/{s['requests']} ok in {s['wall']:.1f} s, p95 "
                  f"{ms(pct(s['total'], 95))} ms, {len(s['errors'])} errors {s['errors'][:2]}", flush=True)
        big = oversized(app.url, app.proc.pid, args.big_seeds, 1.0) if args.big_seeds else None
        if big:
            print(f"  oversized: RSS {' -> '.join(f'{x:.0f}' for x in big['rss'])} MB, 1 MB: "
                  f"{sorted(set(big['statuses']))}, 60 KB: {big['near_ok']}/30 ok, 200 MB: {big['huge'][0]}",
                  flush=True)
        jam = backlog(app.url, args.backlog, args.length) if args.backlog else None
        if jam:
            print(f"  backlog: {jam['accepted']} posts accepted, another's request took {ms(jam['worst'])} "
                  f"ms {jam['errors'][:2]}", flush=True)
        mem_end = common.rss_mb(app.proc.pid)
    return dict(design=design, stats=stats, backlog=jam, big=big, mem_start=mem_start, mem_end=mem_end,
                start_s=app.start_s)


def side_by_side(args, pairs: int) -> dict:
    """1 visitor, the engine's app against the old design's, both up at once: requests alternate
    between them, so both see the same moments of a busy machine. p50 of each, in s."""
    with common.App(args.weights, script=SCRIPTS["engine"]) as engine, \
            common.App(args.weights, script=SCRIPTS["solo"]) as solo:
        clients = {"engine": client(engine.url, 0), "solo": client(solo.url, 0)}
        totals = {"engine": [], "solo": []}
        for i in range(pairs + 1):  # the first pair pays lazy setup: not counted
            for design in (("engine", "solo") if i % 2 else ("solo", "engine")):
                r = one_request(clients[design], i, args.length, time.perf_counter() + args.timeout)
                if i and r["error"] is None:
                    totals[design].append(r["total"])
        for c in clients.values():
            c.close()
    p50 = {d: pct(t, 50) for d, t in totals.items()}
    print(f"side by side, 1 visitor: engine p50 {ms(p50['engine'])} ms, old design {ms(p50['solo'])} ms "
          f"({len(totals['engine'])} and {len(totals['solo'])} requests)", flush=True)
    return dict(p50=p50, n={d: len(t) for d, t in totals.items()})


def level_table(run: dict, length: int) -> str:
    headers = ["clients", "requests", "errors", "first chunk p50 (ms)", "first chunk p95 (ms)",
               "complete p50 (ms)", "complete p95 (ms)", "requests/s", "generated chars/s"]
    rows = [[s["clients"], s["requests"], len(s["errors"]), ms(pct(s["first"], 50)), ms(pct(s["first"], 95)),
             ms(pct(s["total"], 50)), ms(pct(s["total"], 95)), f"{s['ok'] / s['wall']:.2f}",
             f"{s['ok'] * 2 * length / s['wall']:,.0f}"] for s in run["stats"]]
    return common.table(headers, rows)


def targets(new: dict, length: int, pair: dict | None) -> str:
    """Issue 23's targets, checked on this run's numbers (ratios within the run), then the memory ones."""
    by = {s["clients"]: s for s in new["stats"]}
    one = by.get(1)
    one_p50 = pct(one["total"], 50) if one else None
    rows = []
    if CEILING_LEVEL in by and by[CEILING_LEVEL].get("ceiling"):
        s, ceiling = by[CEILING_LEVEL], sum(by[CEILING_LEVEL]["ceiling"]) / 2
        share = s["ok"] * 2 * length / s["wall"] / ceiling
        rows.append([f"{CEILING_LEVEL} visitors: chars/s ≥ 75% of the bare model's ({CEILING_ROWS} rows, 1 "
                     "thread)",
                     f"{share:.0%} of {ceiling:,.0f}", share >= 0.75])
        rows.append([f"{CEILING_LEVEL} visitors: 0 errors", len(s["errors"]), not s["errors"]])
    if pair and pair["p50"]["engine"] and pair["p50"]["solo"]:
        ratio = pair["p50"]["engine"] / pair["p50"]["solo"]
        rows.append(["1 visitor: p50 no slower than the old design's (side by side, alternating)",
                     f"{ratio:.2f}x ({ms(pair['p50']['engine'])} / {ms(pair['p50']['solo'])} ms)",
                     ratio <= 1.0])
    if one_p50 and 16 in by:
        s = by[16]
        ratio = pct(s["total"], 95) / one_p50 if s["total"] else None
        rows.append(["16 visitors: p95 ≤ 3x the 1-visitor p50", f"{ratio:.1f}x" if ratio else "—",
                     ratio is not None and ratio <= 3])
        rows.append(["16 visitors: 0 errors", len(s["errors"]), not s["errors"]])
    if one_p50 and new["backlog"]:
        worst = new["backlog"]["worst"]
        rows.append(["beside one visitor's 20 unread requests: another's ≤ 2x the 1-visitor p50",
                     f"{worst / one_p50:.1f}x ({ms(worst)} ms)" if worst else "—",
                     worst is not None and worst <= 2 * one_p50])
    rows = [[t, v, "yes" if ok else "**no**"] for t, v, ok in rows + memory(new)]
    return common.table(["target", "engine", "met"], rows)


def memory(new: dict) -> list:
    """The memory targets of the oversized-bodies scenario (rows for targets())."""
    if not new["big"]:
        return []
    rss, huge = new["big"]["rss"], new["big"]["huge"][0]
    grew = [rss[1] - rss[0], rss[2] - rss[1]]
    return [["30 requests with a 1 MB seed: RSS growth ≤ 40 MB", f"{grew[0]:+.0f} MB", grew[0] <= 40],
            ["then 30 with a 60 KB seed (read): RSS growth ≤ 40 MB", f"{grew[1]:+.0f} MB", grew[1] <= 40],
            ["200 MB body refused without parsing", huge, huge == 413]]


def scenario_table(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        b, g = r["backlog"], r["big"]
        rows.append([r["design"],
                     f"{b['accepted']} posted; another's request {ms(b['worst'])} ms" if b else "—",
                     f"{len(g['statuses'])} x 1 MB: HTTP {'/'.join(map(str, sorted(set(g['statuses']))))}; "
                     f"30 x {g['near_bytes'] // 1000} KB: {g['near_ok']} answered; "
                     f"200 MB: HTTP {g['huge'][0]} in {g['huge'][2] * 1000:,.0f} ms" if g else "—",
                     " → ".join(f"{x:,.0f}" for x in g["rss"]) if g else "—",
                     f"{r['mem_start']['VmRSS']:,.0f} / {r['mem_end']['VmHWM']:,.0f}"])
    return common.table(["design", "backlog: 1 client, unread 1000-char requests", "oversized bodies",
                         "RSS before / after 1 MB / after 60 KB (MB)", "RSS at start / peak (MB)"], rows)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--designs", default="engine,solo", help=f"comma-separated, from: {', '.join(DESIGNS)}")
    p.add_argument("--levels", default="1,16,32,64", help="comma-separated numbers of concurrent clients")
    p.add_argument("--solo-levels", default="",
                   help="levels the old design runs alone (its 16+ take minutes)")
    p.add_argument("--pairs", type=int, default=12,
                   help="1-visitor requests to each design, alternating (0: skip)")
    p.add_argument("--timed", default="32,64",
                   help="levels that run for --duration s instead of a number of requests")
    p.add_argument("--duration", type=float, default=60.0, help="seconds a timed level keeps sending")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per untimed level (default: 3 per client, 16+)")
    p.add_argument("--length", type=int, default=300, help="chars per continuation (the app's default)")
    p.add_argument("--timeout", type=float, default=180.0,
                   help="seconds allowed per level; the rest count as errors")
    p.add_argument("--backlog", type=int, default=20,
                   help="unread 1000-char requests one client posts (0: skip)")
    p.add_argument("--big-seeds", type=int, default=30, help="requests with a 1 MB seed (0: skip)")
    args = common.parse(p, argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    timed = {int(x) for x in args.timed.split(",") if x.strip()}
    designs = [d for d in args.designs.split(",") if d.strip()]
    if not levels or min(levels) < 1 or (args.requests or 1) < 1 or args.length < 1 or args.timeout <= 0:
        p.error("--levels, --requests, --length and --timeout must be positive")
    if not designs or set(designs) - set(DESIGNS):
        p.error(f"--designs must be taken from {', '.join(DESIGNS)}")
    print(common.machine(), "\n" + common.lscpu_line(), flush=True)
    solo_levels = [int(x) for x in args.solo_levels.split(",") if x.strip()]
    runs = [measure(d, args, levels if d == "engine" else solo_levels, timed) for d in designs
            if d == "engine" or solo_levels]
    pair = side_by_side(args, args.pairs) if args.pairs and set(designs) == set(DESIGNS) else None

    tables = [f"**{DESIGNS[r['design']]}**\n\n{level_table(r, args.length)}" for r in runs]
    new = next((r for r in runs if r["design"] == "engine"), None)
    body = "\n\n".join(tables + [scenario_table(runs)] + ([targets(new, args.length, pair)] if new else []))
    print(body)
    errors = sum(len(s["errors"]) for r in runs for s in r["stats"] if r["design"] == "engine")
    common.write_section("app_load", common.section(
        "The app under concurrent load", f"`python app.py --model {args.weights}` on 127.0.0.1, each design "
        f"in its own process, driven by gradio_client. CPU: {common.lscpu_line()}.", body,
        notes(args, levels, timed, new)), args.results)
    print(f"wrote the app_load section of {args.results}")
    return 1 if errors else 0


def notes(args, levels: list[int], timed: set[int], new: dict | None) -> str:
    """How the run was made, under its tables."""
    level = next((s for s in new["stats"] if s.get("ceiling")), None) if new else None
    ceiling = ""
    if level:
        ceiling = f"""
- The bare model: `generate.make_step` (torch.lstm_cell on the model's weights, argmax fed back, no
  sampling, streaming or web server) over {CEILING_ROWS} rows on one thread, in the benchmark's own process,
  for 3 s just before and just after the {CEILING_LEVEL}-visitor level: {level['ceiling'][0]:,.0f} and
  {level['ceiling'][1]:,.0f} chars/s; the target uses their mean."""
    if args.pairs:
        ceiling += f"""
- Side by side: both designs' apps up at once, one visitor alternating {args.pairs} requests to each
  (after one pair for lazy setup), so both see the same moments of this shared machine."""
    counted = ", ".join(str(n) for n in levels if n not in timed) or "—"
    kept_sending = ", ".join(str(n) for n in levels if n in timed) or "—"
    return f"""- Each request streams {args.length} greedy + {args.length} sampled chars (temperature 0.8, a
  fixed sampling seed per request) through the `generate` endpoint, as the page's Generate button does.
  Each client is its own visitor (its own X-Forwarded-For address) and sends its next request when the
  last is done. Levels {counted} share {args.requests or '3 per client (at least 16)'}
  requests; levels {kept_sending} keep sending for {args.duration:g} s.
  A level may take at most {args.timeout:g} s. Clients and app share this machine's cores (see the
  notes below the section for what else was running).
- "first chunk" is the time from submit to the first streamed update (polled every {POLL_S * 1000:g} ms);
  "complete" to the final result. Requests/s and chars/s are over the level's wall time.
- Backlog: one visitor posts {args.backlog} requests of 1000 chars to `/gradio_api/call/generate` and
  never reads them; another visitor's request is then timed three times (the worst is shown).
- Oversized bodies (before the backlog): {args.big_seeds} requests with a 1 MB seed, then 30 read requests
  with a 61 KB seed (5 clients at a time), then one that declares a 200 MB body and sends 1 MB of it; the
  app's RSS before and after each group.{ceiling}"""


if __name__ == "__main__":
    sys.exit(main())
