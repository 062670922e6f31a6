"""Shared by the benchmarks: machine facts, the command line, markdown tables, median timing,
the flags every bench takes, writing one section of RESULTS.md, and starting the app in a subprocess."""
import argparse
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/ first on the path, not the repo
    sys.path.insert(0, str(ROOT))

# Keep gradio and the Hub client off the network: the benchmarks are loopback only.
QUIET_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
os.environ.update(QUIET_ENV)

HEADER = """# Benchmarks

Every number below was measured by the command shown above it, on the machine named there; rerun a
command to replace its section (each script rewrites only its own section, between the markers).
These are benchmarks, not tests: CI runs each script only with a tiny budget
(`tests/test_bench_smoke.py`), so a section that says *not yet measured* has never been run in full.
"""


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def lscpu_line() -> str:
    """The CPU's model name and its vector-instruction flags (SSE/AVX/FMA/AMX/VNNI/F16C), as lscpu
    reports them: what decides how fast torch's CPU kernels run."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return cpu_name() + " (lscpu not available)"
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    wanted = ("sse4", "avx", "fma", "amx", "vnni", "f16c", "bf16")
    flags = [f for f in fields.get("Flags", "").split() if f.startswith(wanted)]
    name = fields.get("Model name", cpu_name()).strip()
    return f"{name}; flags: {' '.join(flags) or 'none of the vector ones'}"


SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what decides torch's CPU speed here (issue 23)


def speed_flags() -> str:
    """Which of SPEED_FLAGS this CPU has, as /proc/cpuinfo lists them: "avx2 yes, ..., amx_bf16 no"."""
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return "flags unknown"
    have = set(line.split(":", 1)[1].split())
    return ", ".join(f"{f} {'yes' if f in have else 'no'}" for f in SPEED_FLAGS)


def machine() -> str:
    """One line that says where a number comes from."""
    import torch

    return (f"{cpu_name()} ({speed_flags()}), {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}, {platform.system()}")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command() -> str:
    """The command that produced this run, as someone would retype it from the repo root.
    --results is dropped: it only says where this copy of the section went."""
    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--results":
            skip = True
        elif not a.startswith("--results="):
            args.append(a)
    script = os.path.relpath(Path(sys.argv[0]).resolve(), ROOT)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, args)])


def table(headers: list[str], rows: list[list]) -> str:
    """A markdown table (it also reads fine printed to a terminal)."""
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, cells[1:])])


def median_ms(fn, runs: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of fn() in ms over `runs` calls after `warmup` untimed ones
    (the first call pays for lazy allocations and is not what a user waits for twice)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), times


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def write_section(name: str, body: str, path: Path | str = RESULTS) -> None:
    """Replace the section `name` of the results file (or append it), leaving the others as they were."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    start, end = markers(name)
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def section(title: str, what: str, table_md: str, notes: str = "", plot: str | None = None) -> str:
    """The standard body of a section: what was measured, by which command, where, when."""
    parts = [f"## {title}", what.strip(),
             f"Command: `{command()}`  \nMeasured: {now()}  \nMachine: {machine()}", table_md]
    if plot:
        parts.append(f"![{title}]({plot})")
    if notes:
        parts.append(notes.strip())
    return "\n\n".join(parts)


WEIGHTS_HELP = "folder with config.json + model.safetensors"


def parser(doc: str, weights: str | None = WEIGHTS_HELP) -> argparse.ArgumentParser:
    """A bench's command line: the first line of its docstring `doc`, and --weights (the model it
    measures, said by `weights`; None: a bench of no one model). The bench adds its own flags, then
    `parse` adds --results."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    if weights is not None:
        p.add_argument("--weights", default="weights", help=weights)
    return p


def parse(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """The bench's flags, with --results last: the markdown file its section is written into."""
    p.add_argument("--results", default=str(RESULTS), help="markdown file to write this section into")
    return p.parse_args(argv)


def measure_and_write(name: str, p: argparse.ArgumentParser, argv, measure, report) -> int:
    """A bench's whole run: parse its flags, `measure(args)`, then print `report(args, measured)` and
    write it as the section `name` of the results file."""
    args = parse(p, argv)
    body = report(args, measure(args))
    print(body)
    write_section(name, body, args.results)
    return 0


# ---- the app in a subprocess -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB (Linux /proc)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024  # kB -> MB
    return out


def rss_mb_self() -> float:
    return rss_mb(os.getpid())["VmRSS"]


class App:
    """`python app.py --model DIR --port P` on 127.0.0.1 (or another `script` taking the app's
    flags, such as bench/solo.py), ready when its page answers. A context manager so the process
    is always stopped, even when a benchmark fails."""

    def __init__(self, weights: str, timeout: float = 120.0, log: Path | None = None, script: str = "app.py"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.weights, self.timeout, self.log, self.script = weights, timeout, log, script

    def __enter__(self) -> "App":
        self.out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        env = {**os.environ, **QUIET_ENV}
        self.proc = subprocess.Popen(app_command(self.weights, self.port, self.script), cwd=ROOT, env=env,
                                     stdout=self.out, stderr=subprocess.STDOUT)
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                command = " ".join(app_command(self.weights, self.port, self.script))
                raise RuntimeError(f"the app exited with code {self.proc.returncode} before serving "
                                   f"(command: {command})")
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    break
            except OSError:
                pass
            if time.perf_counter() - t0 > self.timeout:
                self.__exit__()
                raise TimeoutError(f"the app did not answer on {self.url} within {self.timeout:.0f} s")
            time.sleep(0.2)
        self.start_s = time.perf_counter() - t0
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.out is not subprocess.DEVNULL:
            self.out.close()


def app_command(weights: str, port: int, script: str = "app.py") -> list[str]:
    return [sys.executable, str(ROOT / script), "--model", str(weights), "--host", "127.0.0.1",
            "--port", str(port)]
