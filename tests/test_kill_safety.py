"""Killed at any moment, nothing is lost and nothing is wrong: real processes, real signals.

SIGKILL runs no cleanup, so what a killed run leaves must be recognisable and harmless: its
ffmpeg children die with it, its temporary outputs are never taken as inputs, and the next run
removes them. SIGTERM (timeout, systemd, docker stop) unwinds like Ctrl-C and exits 143.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie that nobody reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def ffmpegs_on(folder: Path) -> list[int]:
    """Running ffmpeg processes with `folder` in their arguments."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = proc.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"ffmpeg" in args[0] and str(folder).encode() in b" ".join(args) and alive(int(proc.name)):  # fmt: skip
            pids.append(int(proc.name))
    return pids


def wait_for(condition, timeout: float = 60.0, every: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def python(code: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env or ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------ ffmpeg


def test_ffmpeg_dies_with_its_parent(tmp_path):
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from avlink_cli.media.ffmpeg import ffmpeg_process\n"
        "args = ['-re', '-f', 'lavfi', '-i', 'sine=duration=60', '-f', 'null', '-']\n"
        "with ffmpeg_process(args, Path('x'), 'test') as proc:\n"
        "    print(proc.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    parent = python(code)
    child = int(parent.stdout.readline())
    try:
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not alive(child), timeout=10), "ffmpeg outlived its parent"
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
