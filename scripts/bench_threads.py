"""CPU threads A/B: a cold `avlink dub` on an idle machine and beside one busy process.

    python scripts/bench_threads.py [--runs 3] [--input examples/bounce.mp4]

Each configuration runs the whole command as a fresh process (start-up and model load included),
`--runs` times, and the median wall time is reported:

- torch's old default: one thread per CPU with spinning OpenMP waits
  (``OMP_WAIT_POLICY=ACTIVE``, ``--threads <CPUs>``), what avlink did before threads.py;
- ``OMP_NUM_THREADS=1``;
- avlink's policy: no option, no environment (threads.py picks the count while torch loads).

"Busy" starts one CPU-bound process (a shell loop, as a second job of `xargs -P2` would be) for
the duration of the runs. The outputs of every run are compared byte for byte: the thread count
must not change the file. Run it on a machine with nothing else going on; it prints the load it
found before starting.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_once(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--input", default=str(REPO / "examples" / "bounce.mp4"))
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    configs = {
        f"old default ({cpus} threads, spinning)": ({"OMP_WAIT_POLICY": "ACTIVE"}, cpus),
        "OMP_NUM_THREADS=1": ({"OMP_NUM_THREADS": "1"}, None),
        "avlink's policy": ({}, None),
    }
    print(f"{cpus} CPUs; load average {os.getloadavg()[0]:.2f} before starting")
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "out.mp4"
        digests, rows = set(), []
        for busy in (False, True):
            loop = subprocess.Popen(["sh", "-c", "while :; do :; done"]) if busy else None
            try:
                for name, (env, threads) in configs.items():
                    cmd = [sys.executable, "-m", "avlink_cli", "dub", args.input, "-o", str(out)]
                    cmd += ["--overwrite", "-q"] + ([f"--threads={threads}"] if threads else [])
                    times = [run_once(cmd, base | env) for _ in range(args.runs)]
                    digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
                    rows.append((name, busy, statistics.median(times), times))
            finally:
                if loop is not None:
                    loop.kill()
                    loop.wait()
    idle = {name: t for name, busy, t, _ in rows if not busy}
    print(f"{'configuration':40} {'machine':14} {'median s':>9} {'vs idle':>8}  runs")
    for name, busy, t, times in rows:
        where = "one busy proc" if busy else "idle"
        runs = " ".join(f"{x:.2f}" for x in times)
        print(f"{name:40} {where:14} {t:9.2f} {t / idle[name]:7.2f}x  {runs}")
    print("outputs identical across all runs:", len(digests) == 1)


if __name__ == "__main__":
    main()
