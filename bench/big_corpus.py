"""Train on a big corpus: peak memory and wall time of the whole `train.py` run, preparation included.

    python bench/big_corpus.py --size-mb 300     # makes /tmp/big.txt from el_quijote.txt if missing

Runs `train.py --data BIG --max-minutes 0.5 --hidden-size 128 --num-layers 1` twice under
/usr/bin/time -v: cold (an empty token cache: the one-pass preparation runs) and warm (the token
file is found by its content hash). With --baseline-rev REV it first runs that revision's train.py
(e.g. the in-memory loader before issue 12) the same way, stopped after --baseline-timeout seconds.
Targets (issue 12): 300 MB trains with peak RSS <= 1.5 GB and the cold run ends within 5 minutes.
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TRAIN_ARGS = ["--hidden-size", "128", "--num-layers", "1"]
NOTES = """- The token file (uint8 ids, one byte a char) is read through a memmap, one (64, 65) window a step;
  memory no longer grows with the corpus. The cold run also prepares that file in one pass (hash, NFC,
  vocabulary, ids): the difference in "s until training starts" between cold and warm is that pass.
- Most of a short run is evaluation: at most `--max-eval-chars` (1,000,000) validation chars, read as
  16 rows at each evaluation and as one sequence for the final score; on this CPU, nearly idle, a
  128-unit GRU reads 100k chars in 0.7 s as 16 rows and in 2.8 s as one.
- Wall times depend on what else runs on the 2 cores (other processes were running during these runs);
  peak RSS does not. The before row is stopped after --baseline-timeout seconds, whether or not it has
  started training; had it gone on, its final score would have read all the validation chars as one
  sequence."""


def make_corpus(path: Path, size: int) -> None:
    """`size` bytes of el_quijote.txt, each copy with its lines in another seeded order."""
    from charrnn.data import find_corpus

    lines = find_corpus().read_text(encoding="utf-8").split("\n")
    rng, written = random.Random(0), 0
    with open(path, "wb") as f:
        while written < size:
            rng.shuffle(lines)
            block = ("\n".join(lines) + "\n").encode("utf-8")[: size - written]
            block = block.decode("utf-8", errors="ignore").encode("utf-8")  # no half character at the end
            f.write(block)
            written += len(block) or size


def timed_run(argv: list[str], cwd: Path, env: dict, timeout: float | None = None) -> dict:
    """Run under /usr/bin/time -v; peak RSS (MB), wall seconds, seconds until the first training log
    line ("N parameters, ..."), the last stdout lines and the return code."""
    cmd = ["/usr/bin/time", "-v", *(["timeout", str(int(timeout))] if timeout else []), *argv]
    start, first_step = time.perf_counter(), None
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip())
            if first_step is None and " parameters, " in line:
                first_step = time.perf_counter() - start
        rc = proc.wait()
        wall = time.perf_counter() - start
        err.seek(0)
        stderr = err.read()
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return dict(rc=rc, wall=wall, first_step=first_step, peak_mb=int(peak.group(1)) / 1024 if peak else None,
                stdout=lines, stderr_tail=stderr.strip().splitlines()[-25:])


def baseline_tree(rev: str, dest: Path) -> Path:
    """The files of revision `rev`, exported (not checked out) into `dest`."""
    archive = subprocess.run(["git", "archive", rev], cwd=common.ROOT, capture_output=True, check=True).stdout
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def row(name: str, r: dict) -> list:
    val = next((line for line in r["stdout"] if "best val" in line), "")
    score = re.search(r"best val (\d+\.\d+)", val)
    return [name, f"{r['wall']:.0f}", f"{r['first_step']:.0f}" if r["first_step"] else "never",
            f"{r['peak_mb']:,.0f}" if r["peak_mb"] else "?", score.group(1) if score else "-",
            "ok" if r["rc"] == 0 else f"stopped (rc {r['rc']})"]


def main(argv=None) -> int:
    p = common.parser(__doc__, weights=None)
    p.add_argument("--size-mb", type=float, default=300)
    p.add_argument("--path", default="/tmp/big.txt",
                   help="the corpus; made from el_quijote.txt if missing or of another size")
    p.add_argument("--minutes", type=float, default=0.5, help="train.py --max-minutes")
    p.add_argument("--work", default="/tmp/charrnn-big-corpus",
                   help="token cache and run folders (emptied first)")
    p.add_argument("--baseline-rev", default=None, help="also run this git revision's train.py first")
    p.add_argument("--baseline-timeout", type=float, default=300)
    args = common.parse(p, argv)
    path, size, work = Path(args.path), int(args.size_mb * 1e6), Path(args.work)
    if not path.is_file() or abs(path.stat().st_size - size) > 4:
        make_corpus(path, size)
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, **common.QUIET_ENV, "CHARRNN_CACHE": str(work / "cache")}

    def train(root, out):  # the train.py command of the checkout at `root`, writing into work/out
        return [sys.executable, str(root / "train.py"), "--data", str(path), "--max-minutes",
                str(args.minutes), *TRAIN_ARGS, "--out", str(work / out)]

    runs = []
    if args.baseline_rev:
        root = baseline_tree(args.baseline_rev, work / "baseline")
        runs.append((f"{args.baseline_rev} (before)",
                     timed_run(train(root, "run-base"), root, env, args.baseline_timeout)))
    runs.append(("cold: preparation + training", timed_run(train(common.ROOT, "run-cold"), common.ROOT, env)))
    runs.append(("warm: token file found by hash",
                 timed_run(train(common.ROOT, "run-warm"), common.ROOT, env)))
    for name, r in runs:
        tail = r["stdout"][-4:] + ([] if r["rc"] == 0 else r["stderr_tail"][-3:])
        print(f"{name}: " + "\n  ".join(tail), flush=True)

    headers = ["run", "wall s (whole run)", "s until training starts", "peak RSS MB",
               "final val nats/char", "exit"]
    table_md = common.table(headers, [row(name, r) for name, r in runs])
    print(table_md)
    corpus_line = next((line for name, r in runs[-1:] for line in r["stdout"] if " parameters, " in line), "")
    what = (f"`train.py --data {path} --max-minutes {args.minutes:g} {' '.join(TRAIN_ARGS)}` on a "
            f"{path.stat().st_size / 1e6:,.0f} MB corpus (el_quijote.txt repeated, each copy's lines "
            "shuffled), timed with /usr/bin/time -v from start to exit. Targets: peak RSS <= 1,536 MB and "
            f"the cold run within 300 s.\n\nTraining log: `{corpus_line}`")
    common.write_section(f"big_corpus_{args.size_mb:g}mb", common.section(
        f"Training on a {args.size_mb:g} MB corpus: memory and time", what, table_md, NOTES), args.results)
    return 0 if all(r["rc"] == 0 for name, r in runs if "before" not in name) else 1


if __name__ == "__main__":
    sys.exit(main())
