"""Killed at any moment, nothing is lost and nothing is wrong: real processes, real signals.

SIGKILL runs no cleanup, so what a killed run leaves must be recognisable and harmless: its
ffmpeg children die with it, its temporary outputs are never taken as inputs, and the next run
removes them. SIGTERM (timeout, systemd, docker stop) unwinds like Ctrl-C and exits 143.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_model import make_model_folder

from avlink_cli import media
from avlink_cli.files import remove_stale_parts

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


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")


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


def test_a_killed_writer_leaves_a_part_that_only_a_later_run_removes(tmp_path):
    """A write in progress is claimed: a cleaner leaves it alone. Killed, its ffmpeg dies (it
    would otherwise finish a short file), and the next cleaner removes what is left."""
    code = (
        "import sys, time\n"
        "import numpy as np\n"
        "from avlink_cli import media\n"
        "def frames():\n"
        "    for i in range(600):\n"
        "        yield np.full((1, 16, 16, 3), i % 250, np.uint8)\n"
        "        time.sleep(0.05)\n"
        "media.write_video(sys.argv[1], frames(), 10.0)\n"
    )
    writer = python(code, str(tmp_path / "clip.dubbed.mp4"))
    try:
        assert wait_for(lambda: hidden(tmp_path) and ffmpegs_on(tmp_path), timeout=60)
        (part,) = hidden(tmp_path)
        assert remove_stale_parts(tmp_path) == [] and hidden(tmp_path) == [part]  # claimed
        children = ffmpegs_on(tmp_path)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert wait_for(lambda: not any(map(alive, children)), timeout=10)
    finally:
        writer.kill()
        for pid in ffmpegs_on(tmp_path):
            os.kill(pid, signal.SIGKILL)
    assert hidden(tmp_path) == [part] and not (tmp_path / "clip.dubbed.mp4").exists()
    with pytest.raises(media.MediaError):  # cut short: never a playable, too short video
        media.probe(tmp_path / part)
    assert remove_stale_parts(tmp_path) == [tmp_path / part] and hidden(tmp_path) == []


def test_scratch_folders_of_dead_processes_are_removed(tmp_path):
    env = {**ENV, "TMPDIR": str(tmp_path)}
    code = (
        "import os, signal, sys, time\n"
        "from avlink_cli.files import scratch_dir\n"
        "with scratch_dir() as d:\n"
        "    (d / 'audio.wav').write_bytes(b'x' * 1000)\n"
        "    print(d.name, flush=True)\n"
        "    if sys.argv[1] == 'die':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    time.sleep(60)\n"
    )
    live = python(code, "live", env=env)
    try:
        live_dir = live.stdout.readline().strip()
        dead = python(code, "die", env=env)
        dead_dir = dead.stdout.readline().strip()
        dead.wait()
        (tmp_path / "avlink-other").mkdir()  # no lock: another program's, or an older avlink's
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [live_dir, dead_dir, "avlink-other"]
        )
        clean = "from avlink_cli.files import remove_stale_scratch as r; print(r())"
        res = subprocess.run([sys.executable, "-c", clean], env=env, capture_output=True, text=True)
        assert res.stdout.strip() == f"[PosixPath('{tmp_path / dead_dir}')]", res.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_dir, "avlink-other"])
    finally:
        live.kill()


# ------------------------------------------------------------------------------------ whole runs


@pytest.mark.slow
def test_sigkill_mid_write_then_rerun_leaves_six_outputs_and_nothing_else(folder, make_clip, tmp_path):  # fmt: skip
    """The bar: a folder of 6 clips, `kill -9` the moment a temporary output appears, re-run."""
    src = tmp_path / "kill_in"
    src.mkdir()
    for i in range(6):
        shutil.copy(make_clip(fps=25, duration=1.0, freq=200 + 50 * i), src / f"c{i:02d}.mp4")
    env = {**ENV, "TMPDIR": str(tmp_path)}  # its scratch folders, where they can be seen
    cmd = [sys.executable, "-m", "avlink_cli", "dub", str(src), "--model", str(folder)]
    cmd += ["--steps", "2", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: hidden(src), timeout=120), "no temporary output appeared"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        assert wait_for(lambda: not ffmpegs_on(src), timeout=10)
        gone_after = time.monotonic() - killed_at
    finally:
        proc.kill()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    outputs = sorted(src.glob("*.dubbed.mp4"))
    assert [p.name for p in outputs] == [f"c{i:02d}.dubbed.mp4" for i in range(6)]
    for out in outputs:
        info = media.probe(out)
        assert info.has_video and info.has_audio and abs(info.audio_duration - 1.0) < 0.05
    assert hidden(src) == []
    log = [json.loads(ln) for ln in (src / "avlink-manifest.jsonl").read_text().splitlines()]
    assert not [r for r in log if Path(r["input"]).name.startswith(".")]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("avlink-")] == []
    print(f"ffmpeg gone {gone_after:.2f} s after the kill")


SIGTERM_IN = {
    # a finaliser: the handler's SystemExit is dropped ("Exception ignored"); the request stays
    "finaliser": (
        "class Finaliser:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        for _ in range(1000):  # the handler runs in here\n"
        "            pass\n"
        "Finaliser()\n"
    ),
    # around a fork (media.ffmpeg.spawn): only noted, so that no fork hook drops it
    "held": (
        "with shutdown.held():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    for _ in range(1000):\n"
        "        pass\n"
    ),
}


@pytest.mark.parametrize("where", SIGTERM_IN)
def test_a_sigterm_that_cannot_raise_where_it_lands_still_ends_the_run(where):
    """The request is kept: the next check raises it, and the exit code is 143."""
    code = "import os, signal\nfrom avlink_cli import shutdown\nshutdown.install()\n"
    code += SIGTERM_IN[where] + "print('went on', flush=True)\nshutdown.check()\nprint('no')\n"
    res = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert res.stdout == "went on\n" and res.returncode == 143, res.stderr
    assert ("Exception ignored" in res.stderr) == (where == "finaliser")


@pytest.mark.slow
def test_sigterm_cleans_up_and_exits_143(folder, make_clip, tmp_path):
    """Killed by SIGTERM in the middle of a long input: the clips before it are written and
    logged, nothing of the long one is left (output, temporary files, scratch folders), and
    the exit code is 143 like a shell's for a process that SIGTERM ended."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        shutil.copy(make_clip(fps=25, duration=1.0), src / f"{name}.mp4")
    shutil.copy(make_clip(fps=8, duration=60.0, size=(16, 16)), src / "z_long.mp4")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**ENV, "TMPDIR": str(scratch)}
    cmd = [sys.executable, "-m", "avlink_cli", "dub", str(src), "--model", str(folder)]
    cmd += ["--batch-size", "1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = src / "avlink-manifest.jsonl"

    def on_the_long_one() -> bool:
        logged = manifest.read_text().count("\n") if manifest.exists() else 0
        return logged == 2 and any(p.name.startswith("avlink-") for p in scratch.iterdir())

    try:
        assert wait_for(on_the_long_one, timeout=120, every=0.02)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert list(scratch.iterdir()) == []
    assert hidden(src) == [] and not list(src.glob("z_long.dubbed.*"))
    assert sorted(p.name for p in src.glob("*.dubbed.mp4")) == ["a.dubbed.mp4", "b.dubbed.mp4"]
    log = [json.loads(ln) for ln in manifest.read_text().splitlines()]
    assert [(Path(r["input"]).name, r["status"]) for r in log] == [("a.mp4", "ok"), ("b.mp4", "ok")]
    assert not ffmpegs_on(src)
