"""The app under load: start `python app.py` on a loopback port and drive its `generate` endpoint
from N concurrent gradio_client clients (1, 4, 16) for a bounded number of requests; report
latency to the first streamed chunk and to completion, throughput, and errors (must be 0).

    python bench/app_load.py                 # ~1-2 min
    python bench/app_load.py --weights DIR --levels 1,2 --requests 2 --length 50 --results /tmp/R.md   # smoke
"""
import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402  (after the path fix, so `python bench/x.py` works)

from gradio_client import Client  # noqa: E402

SEEDS = ["En un lugar de la Mancha, de cuyo nombre no quiero acordarme,", "Dijo don Quijote a su escudero:",
         "En esto, descubrieron treinta o cuarenta molinos de viento", "Sancho Panza"]
POLL_S = 0.002  # how often a client looks for the first streamed chunk: the resolution of that latency


def one_request(client: Client, i: int, length: int, deadline: float) -> dict:
    """One streamed generation; times to the first chunk and to the end, or the error."""
    t0 = time.perf_counter()
    # The endpoint's inputs: seed, length, temperature, top-k, top-p, sampling seed, stop at.
    job = client.submit(SEEDS[i % len(SEEDS)], length, 0.8, 0, 1.0, i, "don't stop", api_name="/generate")
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


def run_level(url: str, clients: int, requests: int, length: int, timeout: float) -> dict:
    """`clients` threads, each with its own Client, share `requests` requests; bounded by `timeout` s."""
    pool = [Client(url, verbose=False, analytics_enabled=False, download_files=False) for _ in range(clients)]
    results, lock, counter = [], threading.Lock(), iter(range(requests))
    t0 = time.perf_counter()
    deadline = t0 + timeout

    def worker(client):
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            r = one_request(client, i, length, deadline)
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
    missing = requests - len(results)  # never sent: the level ran out of time
    ok = [r for r in results if r["error"] is None]
    errors = [r["error"] for r in results if r["error"]] + ["not sent before the time limit"] * missing
    return dict(clients=clients, requests=requests, ok=len(ok), errors=errors, wall=wall,
                first=[r["first"] for r in ok], total=[r["total"] for r in ok])


def pct(xs: list[float], q: int) -> str:
    """The q-th percentile in ms ('—' without data); quantiles interpolates between samples."""
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0] * 1000:,.0f}"
    return f"{statistics.quantiles(xs, n=100, method='inclusive')[q - 1] * 1000:,.0f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights", help="folder with config.json + model.safetensors")
    p.add_argument("--levels", default="1,4,16", help="comma-separated numbers of concurrent clients")
    p.add_argument("--requests", type=int, default=48, help="requests per level, shared by its clients")
    p.add_argument("--length", type=int, default=300, help="chars per continuation (the app's default)")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per level; the rest count as errors")
    p.add_argument("--results", default=str(common.RESULTS), help="markdown file to write this section into")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if not levels or min(levels) < 1 or args.requests < 1 or args.length < 1 or args.timeout <= 0:
        p.error("--levels, --requests, --length and --timeout must be positive")

    with common.App(args.weights) as app:
        print(f"app up on {app.url} in {app.start_s:.1f} s; {common.machine()}", flush=True)
        mem_start = common.rss_mb(app.proc.pid)
        warm = run_level(app.url, 1, 1, args.length, args.timeout)  # untimed: the first request pays lazy setup
        if warm["errors"]:
            print(f"  warm-up request failed: {warm['errors'][0]}", flush=True)
        stats = []
        for n in levels:
            s = run_level(app.url, n, args.requests, args.length, args.timeout)
            stats.append(s)
            print(f"  {n} clients: {s['ok']}/{s['requests']} ok in {s['wall']:.1f} s, "
                  f"{len(s['errors'])} errors {s['errors'][:3] if s['errors'] else ''}", flush=True)
        mem_end = common.rss_mb(app.proc.pid)

    headers = ["clients", "requests", "errors", "first chunk p50 (ms)", "first chunk p95 (ms)",
               "complete p50 (ms)", "complete p95 (ms)", "requests/s", "generated chars/s"]
    rows = [[s["clients"], s["requests"], len(s["errors"]), pct(s["first"], 50), pct(s["first"], 95),
             pct(s["total"], 50), pct(s["total"], 95), f"{s['ok'] / s['wall']:.2f}",
             f"{s['ok'] * 2 * args.length / s['wall']:,.0f}"] for s in stats]
    table_md = common.table(headers, rows)
    print(table_md)
    errors = sum(len(s["errors"]) for s in stats)
    shown = sorted({e for s in stats for e in s["errors"]})[:5]
    notes = f"""- Errors in all: {errors} (target: 0{'' if not shown else '; first kinds: ' + '; '.join(shown)}).
- Each request streams {args.length} greedy + {args.length} sampled chars (temperature 0.8, a fixed sampling
  seed per request) through the `generate` endpoint, as the page's Generate button does. The clients
  of a level share its {args.requests} requests, each sending its next one when the last is done; a level
  may take at most {args.timeout:g} s. Clients and app share this machine's cores.
- "first chunk" is the time from submit to the first streamed update (polled every {POLL_S * 1000:g} ms);
  "complete" to the final result. Requests/s and chars/s are over the level's wall time.
- App memory: {mem_start['VmRSS']:,.0f} MB RSS after start ({app.start_s:.1f} s to serve), peak
  {mem_end['VmHWM']:,.0f} MB after the load."""
    common.write_section("app_load", common.section(
        "The app under concurrent load", f"`python app.py --model {args.weights}` on 127.0.0.1, driven by gradio_client.",
        table_md, notes), args.results)
    print(f"wrote the app_load section of {args.results}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
