"""How many CPU threads torch uses, and how its OpenMP threads wait: one rule for every entry point.

Why: torch's CPU kernels run on an OpenMP pool (libgomp in the pip wheels) with one thread per core,
and between two parallel regions an idle pool thread *spins* for a while before it sleeps. On a
machine where another process keeps one core busy (a laptop, a shared runner, a Space), the pool
thread on that core is descheduled in the middle of a step while its partner spins at the barrier
waiting for it: `python train.py` on 2 cores beside one busy Python loop did 38 steps in 30 s
where one thread did 112 (issue 23; 10x on another machine). Passive waiting (a waiting thread
sleeps at once) removes the spinning fight, so a busy core costs at most its share of the work
instead of every barrier. Its price is on a quiet machine: waking a sleeping thread at each of an
LSTM step's many small parallel regions made training ~0.7x as fast as 2 spinning threads on a
2-core AMD EPYC; no fixed spin count was both (bench/RESULTS.md, "Threads"). Where nothing else
runs, OMP_WAIT_POLICY=ACTIVE gets that speed back.

OpenMP reads its wait policy once, when torch loads it: this module must be imported before torch.
The package's `__init__` imports it first, so `import charrnn` (and with it every entry point:
train.py, the `charrnn` CLIs, the app) sets it in time; a program that imported torch earlier keeps
its own setting. Settings the user gave in the environment (OMP_WAIT_POLICY, OMP_NUM_THREADS,
GOMP_SPINCOUNT) always win. bench/threads.py measures the rule (bench/RESULTS.md, "Threads").
"""
import contextlib
import os
import sys

WAIT_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
TORCH_LOADED_FIRST = "torch" in sys.modules  # too late to set OpenMP's wait policy

if not TORCH_LOADED_FIRST:
    for _name, _value in WAIT_DEFAULTS.items():
        os.environ.setdefault(_name, _value)

import torch  # noqa: E402  (after the environment is set: that is this module's job)


def user_threads() -> int | None:
    """The thread count the user asked for with OMP_NUM_THREADS, or None."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask; os.cpu_count() where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# Work -> torch threads when the user did not set OMP_NUM_THREADS (None: every usable core).
# Training's products are big enough to share between cores; a one-char generation step's are
# not: a second thread costs more in waking and waiting than it gives (bench/RESULTS.md, "Threads").
THREADS_FOR = {"train": None, "read": None, "step": 1}


def threads_for(work: str, sharing: int = 1) -> int:
    """The torch thread count for `work` ("train", "read" or "step"): OMP_NUM_THREADS when the user
    set it, else THREADS_FOR's, divided among `sharing` threads that run torch side by side (the
    static read runs one thread per RNN layer: on 2 cores, a 2-layer model reads fastest with one
    torch thread each)."""
    return user_threads() or max(1, (THREADS_FOR[work] or usable_cores()) // sharing)


def configure(work: str, sharing: int = 1) -> int:
    """Set torch's thread count for `work` (threads_for); returns it. Threads started afterwards
    start with it too; a worker thread started before calls this itself."""
    torch.set_num_threads(threads_for(work, sharing))
    return torch.get_num_threads()


@contextlib.contextmanager
def using(work: str, sharing: int = 1):
    """configure(work, sharing) for the `with` block, then torch's thread count as it was."""
    before = torch.get_num_threads()
    configure(work, sharing)
    try:
        yield
    finally:
        torch.set_num_threads(before)
