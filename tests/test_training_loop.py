"""The shared training loop: loss goes down, SIGKILL + resume is exact, torchrun matches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("toy_train.py")
ROOT = Path(__file__).resolve().parents[1]


def run_toy(tmp: Path, name: str, steps: int, batch: int, *, sleep: float = 0.0, nproc: int = 1):
    out = tmp / f"{name}.safetensors"
    args = [str(SCRIPT), str(tmp / f"ckpt-{name}"), str(steps), str(batch), str(out), str(sleep)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return cmd, env, out


def latest_step(ckpt: Path) -> int:
    try:
        return json.loads((ckpt / "latest.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_loss_goes_down(tmp_path):
    cmd, env, out = run_toy(tmp_path, "a", 40, 16)
    subprocess.run(cmd, env=env, check=True, timeout=120)
    losses = load_file(out)["losses"]
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.slow
def test_sigkill_then_resume_is_exact(tmp_path):
    cmd, env, ref = run_toy(tmp_path, "ref", 12, 8)
    subprocess.run(cmd, env=env, check=True, timeout=120)

    cmd, env, out = run_toy(tmp_path, "killed", 12, 8, sleep=0.15)
    proc = subprocess.Popen(cmd, env=env)
    ckpt = tmp_path / "ckpt-killed"
    deadline = time.time() + 60
    while latest_step(ckpt) < 4 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run was meant to be killed before it finished"
    subprocess.run(cmd, env=env, check=True, timeout=120)  # same command resumes

    a, b = load_file(ref), load_file(out)
    for k in a:
        if k.startswith(("param.", "ema.")):
            assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    cmd, env, one = run_toy(tmp_path, "one", 10, 16)
    subprocess.run(cmd, env=env, check=True, timeout=120)
    cmd, env, two = run_toy(tmp_path, "two", 10, 16, nproc=2)
    subprocess.run(cmd, env=env, check=True, timeout=180)
    a, b = load_file(one), load_file(two)
    for k in a:
        if k.startswith("param."):
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
