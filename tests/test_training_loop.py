"""The shared training loop: loss goes down, SIGKILL + resume is exact, torchrun matches."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
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


# --- checkpoints that survive a crash ---------------------------------------------------------


class Crash(Exception):
    """Stands for a process that dies right after a checkpoint was saved."""


def run_in_process(ckpt: Path, *, crash_at: int | None = None):
    """The toy stage for 12 steps (a checkpoint every step); (module, EMA weights)."""
    from toy_train import N, Toy, dataset

    from avlink_cli.training.loop import LoopConfig, train

    x, y = dataset()
    module = Toy()
    cfg = LoopConfig(steps=12, batch_size=8, lr=0.05, warmup=1, ckpt_every=1, ema_decay=0.9)
    cfg = replace(cfg, log_every=1)

    def on_step(report) -> None:
        if report.step == crash_at:
            raise Crash

    ema = train(
        module,
        cfg=cfg,
        n_items=N,
        make_batch=lambda idx: {"x": x[idx], "y": y[idx]},
        ckpt_root=ckpt,
        device=torch.device("cpu"),
        on_step=on_step,
    )
    return module, ema


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_in_process(tmp_path_factory.mktemp("ref") / "ckpt")


def assert_same(got, want) -> None:
    (module, ema), (ref_module, ref_ema) = got, want
    for (k, p), (_, q) in zip(
        module.named_parameters(), ref_module.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), k
    assert all(torch.equal(ema[k], ref_ema[k]) for k in ref_ema)


def crashed_at_6(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Crash):
        run_in_process(ckpt, crash_at=6)
    assert sorted(p.name for p in ckpt.glob("ckpt-*")) == ["ckpt-0000005", "ckpt-0000006"]
    return ckpt


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # one flipped byte in the tensor data: only the checksum can tell
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("state.safetensors", "truncated"),
        ("state.safetensors", "flipped"),
        ("state.json", "truncated"),
    ],  # fmt: skip
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path, caplog, reference, name, how):  # fmt: skip
    ckpt = crashed_at_6(tmp_path)
    damage(ckpt / "ckpt-0000006" / name, how)
    with caplog.at_level(logging.WARNING, logger="avlink_cli.training.loop"):
        resumed = run_in_process(ckpt)
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(ckpt / "ckpt-0000006" / name) in message
    assert f"resuming from the checkpoint before it, {ckpt / 'ckpt-0000005'} (step 5)" in message
    assert_same(resumed, reference)  # steps 6-12 redone exactly as an unbroken run takes them
    assert sorted(p.name for p in ckpt.glob("ckpt-*")) == ["ckpt-0000011", "ckpt-0000012"]


def test_no_usable_checkpoint_is_one_line_saying_how_to_start_over(tmp_path):
    from avlink_cli.batch import one_line
    from avlink_cli.training.loop import CheckpointError

    ckpt = crashed_at_6(tmp_path)
    for folder in ckpt.glob("ckpt-*"):
        damage(folder / "state.safetensors", "truncated")
    with pytest.raises(CheckpointError) as e:
        run_in_process(ckpt)
    message = one_line(e.value)  # what the CLI prints after "error: "
    assert message == str(e.value) and "\n" not in message
    assert message.startswith(f"{ckpt}: no usable checkpoint to resume from")
    assert message.endswith(f"delete {ckpt} to start this stage over")
    assert (
        "ckpt-0000006/state.safetensors" in message and "ckpt-0000005/state.safetensors" in message
    )


def test_checkpoints_written_before_checksums_still_resume_exactly(tmp_path, reference):
    """The format of a run in progress today: one checkpoint, no sha256 in its state.json."""
    ckpt = crashed_at_6(tmp_path)
    shutil.rmtree(ckpt / "ckpt-0000005")
    state = ckpt / "ckpt-0000006" / "state.json"
    info = json.loads(state.read_text())
    del info["sha256"]
    state.write_text(json.dumps(info))
    assert sorted(info) == ["names", "param_groups", "step"]
    assert_same(run_in_process(ckpt), reference)


def test_saves_are_checksummed_and_the_last_two_kept(tmp_path):
    from avlink_cli.manifest import sha256_file

    ckpt = tmp_path / "ckpt"
    run_in_process(ckpt)
    assert sorted(p.name for p in ckpt.iterdir()) == ["ckpt-0000011", "ckpt-0000012", "latest.json"]
    for folder in ckpt.glob("ckpt-*"):
        info = json.loads((folder / "state.json").read_text())
        assert info["sha256"] == {"state.safetensors": sha256_file(folder / "state.safetensors")}
    assert json.loads((ckpt / "latest.json").read_text()) == {"step": 12, "path": "ckpt-0000012"}
