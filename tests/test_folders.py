"""Folders: batching on the device, skipping what exists (resume after a crash), the manifest,
and torchrun shards, on a random tiny model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import make_model_folder
from typer.testing import CliRunner

from avlink_cli import media
from avlink_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
torch.set_num_threads(1)  # the in-process runs share two cores with the subprocesses


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def clips(tmp_path, make_clip) -> Path:
    """Five short videos (different lengths, one over a window) in one folder."""
    d = tmp_path / "in"
    d.mkdir()
    for i, dur in enumerate([1.0, 1.5, 2.5, 1.0, 1.2]):
        shutil.copy(make_clip(fps=25, duration=dur, freq=300 + 100 * i), d / f"c{i}.mp4")
    return d


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outputs(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.dubbed.mp4")}


def test_batch_sizes_agree_and_existing_outputs_are_skipped(folder, clips, tmp_path):
    runs = {}
    for b in (1, 4):
        out = tmp_path / f"out{b}"
        res = invoke("dub", clips, "-o", out, "--model", folder, "--steps", 2, "--batch-size", b)
        assert res.exit_code == 0, res.output
        runs[b] = out
    for i in range(5):
        a, b = (media.read_audio(runs[n] / f"c{i}.dubbed.mp4", sample_rate=16_000) for n in (1, 4))
        # float rounding (~1e-7 a token), Griffin-Lim, then two lossy AAC encodes: within a few
        # percent of the signal (measured: up to 2.1%)
        assert len(a) == len(b) and np.abs(a - b).mean() < 0.05 * np.abs(a).mean()
    log = manifest(runs[4] / "avlink-manifest.jsonl")
    assert len(log) == 5 and {r["status"] for r in log} == {"ok"}
    provenance = {"model", "model_path", "model_sha", "seed", "base_seed", "steps", "cfg"}
    provenance |= {"sampler", "device", "dtype", "threads", "duration", "seconds"}
    assert {"input", "output", "status"} | provenance <= set(log[0])
    assert log[0]["steps"] == 2 and log[0]["model_revision"] is None  # a folder: no Hub commit
    assert len({r["seed"] for r in log}) == 5  # each clip's own seed
    # again: everything is skipped, nothing rewritten; --overwrite redoes it
    before = outputs(runs[4])
    res = invoke("dub", clips, "-o", runs[4], "--model", folder, "--steps", 2, "--json")
    assert res.exit_code == 0, res.output
    *records, total = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert {r["status"] for r in records} == {"skipped"} and total["skipped"] == 5
    assert outputs(runs[4]) == before
    assert [r["status"] for r in manifest(runs[4] / "avlink-manifest.jsonl")[5:]] == ["skipped"] * 5
    res = invoke("dub", clips, "-o", runs[4], "--model", folder, "--steps", 2, "--overwrite")
    assert res.exit_code == 0 and all(outputs(runs[4])[k] > before[k] for k in before)


def test_bad_file_in_a_folder_fails_alone(folder, clips, tmp_path):
    (clips / "broken.mp4").write_bytes(b"not a video")
    log = tmp_path / "log.jsonl"
    res = invoke(
        "dub", clips, "-o", tmp_path / "o", "--model", folder, "--steps", 2, "--manifest", log
    )
    assert res.exit_code == 1 and "broken.mp4" in res.stderr.splitlines()[-1]
    status = {Path(r["input"]).name: r["status"] for r in manifest(log)}
    assert status.pop("broken.mp4") == "error" and set(status.values()) == {"ok"}


def test_killed_run_resumes_without_redoing_or_corrupting(folder, make_clip, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        shutil.copy(make_clip(fps=25, duration=2.5, freq=200 + 50 * i), src / f"k{i}.mp4")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "avlink_cli", "dub", str(src), "-o", str(out)]
    cmd += ["--model", str(folder), "--steps", "4", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.glob("*.dubbed.mp4")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # a crash: no cleanup runs
    proc.communicate()
    first = outputs(out)
    assert 1 <= len(first) < 6, "the run should be cut off half-way"
    for name in first:
        assert media.probe(out / name).has_audio  # what exists is complete
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    done = outputs(out)
    assert len(done) == 6 and all(done[k] == first[k] for k in first)  # nothing redone
    for name in done:
        info = media.probe(out / name)
        assert info.has_audio and abs(info.audio_duration - 2.5) < 0.05
    assert not [p for p in out.iterdir() if not p.name.startswith(".") and p.suffix != ".jsonl"
                and p.name not in done]  # fmt: skip
    statuses = [r["status"] for r in manifest(out / "avlink-manifest.jsonl")]
    assert statuses.count("skipped") == len(first) and statuses.count("ok") == 6


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="no torchrun")  # fmt: skip
def test_torchrun_shards_each_file_once(folder, clips, tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "out"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "avlink_cli", "dub"]
    cmd += [str(clips), "-o", str(out), "--model", str(folder), "--steps", "2"]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    log = manifest(out / "avlink-manifest.jsonl")
    assert sorted(Path(r["input"]).name for r in log) == [f"c{i}.mp4" for i in range(5)]
    assert {r["status"] for r in log} == {"ok"} and {r["rank"] for r in log} == {0, 1}
    for r in log:  # rank r takes inputs i with i % 2 == r (sorted order)
        assert int(Path(r["input"]).stem[1:]) % 2 == r["rank"]
    assert len(outputs(out)) == 5
