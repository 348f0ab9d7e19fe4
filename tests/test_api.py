"""The Python API gives the CLI's file, byte for byte, and fails the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_model import make_model_folder

import avlink_cli

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")


def cli(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "avlink_cli", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


def test_dub_file_and_animate_file_equal_the_cli(folder, make_clip, tmp_path):
    clip = make_clip(fps=25, duration=2.5, audio_rate=44_100, layout="stereo")
    opts = ("--model", folder, "--seed", 7, "--steps", 2)
    assert (
        cli("dub", clip, "-o", tmp_path / "cli.mp4", *opts, "--original-audio", "keep").returncode
        == 0
    )
    rec = avlink_cli.dub_file(
        clip, tmp_path / "api.mp4", model=folder, seed=7, steps=2, original_audio="keep"
    )
    assert rec["status"] == "ok" and rec["steps"] == 2 and rec["model_sha"]
    assert (tmp_path / "api.mp4").read_bytes() == (tmp_path / "cli.mp4").read_bytes()

    assert cli("animate", clip, "-o", tmp_path / "cli_a.mp4", *opts).returncode == 0
    avlink_cli.animate_file(clip, tmp_path / "api_a.mp4", model=folder, seed=7, steps=2)
    assert (tmp_path / "api_a.mp4").read_bytes() == (tmp_path / "cli_a.mp4").read_bytes()

    # an existing output is skipped, a bad input raises with the CLI's message
    assert avlink_cli.dub_file(clip, tmp_path / "api.mp4", model=folder)["status"] == "skipped"
    with pytest.raises(avlink_cli.AvlinkError, match="no such file"):
        avlink_cli.dub_file(tmp_path / "missing.mp4", model=folder)


def test_import_is_light():
    code = "import sys, avlink_cli; print('torch' in sys.modules, avlink_cli.__version__)"
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert res.stdout.split() == ["False", avlink_cli.__version__]
