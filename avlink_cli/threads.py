"""How many CPU threads a command computes with, and how they wait.

Why: torch's default is one OpenMP thread per core, and libgomp's threads spin while they wait
for each other. On a 2-core machine with one other busy process (a second `avlink` in a shell
loop, `xargs -P2`, a browser) a 2-thread dub then takes 7x longer than a 1-thread one: every
parallel region waits for the thread that shares its core with the other process, and the
waiting threads burn the CPU the others need. So the CLI

1. sets ``OMP_WAIT_POLICY=PASSIVE`` before torch loads (unless the user set it): a thread that
   waits sleeps instead of spinning, so a thread count that turns out too high costs little;
2. measures how busy the machine is while torch loads (``LoadProbe``: the CPU time all other
   processes used over that second, from /proc/stat, where it exists);
3. picks ``threads = usable CPUs - busy CPUs`` (at least 1), where usable CPUs are the process's
   affinity mask, capped by a cgroup CPU quota.

``--threads N`` overrides the choice; ``OMP_NUM_THREADS``, when set, wins over both (torch reads
it itself). The same seed gives the same file whatever the thread count (a test checks it on a
real dub), so the choice changes speed only.

Only the CLI calls ``prepare_cli`` (it changes the environment); library code never does.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

WAIT_POLICY = "PASSIVE"


@dataclass(frozen=True)
class Snapshot:
    """Machine-wide busy CPU seconds, this process's own CPU seconds, and the clock."""

    busy: float | None  # None where /proc/stat is missing
    own: float
    wall: float


def snapshot() -> Snapshot:
    t = os.times()  # children: ffmpeg probes that were waited for
    own = t.user + t.system + t.children_user + t.children_system
    return Snapshot(_busy_seconds(), own, time.monotonic())


def _busy_seconds() -> float | None:
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal guest guest_nice (USER_HZ ticks);
    # guest time is already counted in user
    ticks = [int(x) for x in line.split()[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def busy_cpus(start: Snapshot, end: Snapshot) -> float:
    """CPUs kept busy by other processes between two snapshots (load average where no /proc)."""
    span = end.wall - start.wall
    if start.busy is None or end.busy is None or span < 0.05:
        try:
            return max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:
            return 0.0
    return max(0.0, (end.busy - start.busy - (end.own - start.own)) / span)


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (logged under -v, put in --json records)."""

    threads: int
    reason: str


def choose(requested: int | None, *, start: Snapshot | None, end: Snapshot) -> ThreadChoice:
    """The policy of the module notes, without touching torch."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return ThreadChoice(int(env), "OMP_NUM_THREADS")
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    usable = usable_cpus()
    busy = busy_cpus(start or end, end)
    n = max(1, usable - round(busy))
    return ThreadChoice(n, f"{usable} usable CPUs, {busy:.1f} busy with other processes")


_start: Snapshot | None = None


def prepare_cli() -> None:
    """CLI only, before torch is imported: sleep-waiting OpenMP threads, and the first snapshot."""
    global _start
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    _start = snapshot()


def configure(requested: int | None = None) -> ThreadChoice:
    """Import torch (the second the import takes is the load probe's window when the CLI called
    `prepare_cli` first) and set its intra-op thread count by `choose`."""
    import torch

    choice = choose(requested, start=_start, end=snapshot())
    if choice.reason != "OMP_NUM_THREADS" and torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    logger.info("threads: %d (%s)", choice.threads, choice.reason)
    return choice
