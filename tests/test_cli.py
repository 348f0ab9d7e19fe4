"""The avlink CLI: fast help, bad input handling, batches, output naming, exit codes.

Most tests run through typer's CliRunner; a few as a real ``python -m avlink_cli`` process. A
stand-in model (``fake_model``) makes sine waves and flat frames so that the whole path from
input to written file runs without weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import packet_md5s
from typer.testing import CliRunner

from avlink_cli import batch, media
from avlink_cli.cli import app

REPO = Path(__file__).resolve().parent.parent


class FakeModel:
    """Generates a 1 kHz sine (dub) or flat grey frames at 8 fps (animate), input-long."""

    def __init__(self, fail_with: Exception | None = None):
        self.fail_with = fail_with

    def dub(self, info, gen, seed):
        if self.fail_with:
            raise self.fail_with
        t = np.arange(round(info.duration * 16_000)) / 16_000
        wav = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        return [batch.Generated(wav=wav, sample_rate=16_000) for _ in range(gen.samples)]

    def animate(self, info, gen, seed):
        frames = np.full((round(info.duration * 8), 32, 48, 3), 128, np.uint8)
        return [batch.Generated(frames=frames, fps=8.0) for _ in range(gen.samples)]


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr(batch, "load_model", lambda opts: model)
    return model


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def err_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.strip()]


@pytest.fixture
def clips(tmp_path, make_clip) -> Path:
    """A folder with a video with sound, a silent video and a sound file."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(make_clip(fps=25, duration=1.0, audio_rate=44_100), d / "clip.mp4")
    shutil.copy(make_clip(fps=25, duration=1.0), d / "silent.mp4")
    shutil.copy(make_clip(fps=None, audio_rate=16_000, ext=".wav", duration=1.0), d / "drums.wav")
    return d


# ------------------------------------------------------------------------------------ help


def test_help_is_fast_and_imports_no_torch():
    code = (
        "import sys, time; t = time.perf_counter(); sys.argv = ['avlink', '--help']\n"
        "from avlink_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', time.perf_counter() - t)"
    )
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    assert "dub" in res.stdout and "animate" in res.stdout
    verdict, seconds = res.stdout.split()[-2:]
    assert verdict == "NO-TORCH"
    assert float(seconds) < 1.0 and wall < 3.0  # imports and help; wall includes interpreter


def test_command_help_lists_shared_options():
    for cmd in ("dub", "animate"):
        out = invoke(cmd, "--help").stdout
        for opt in ("--model", "--device", "--dtype", "--seed", "--json", "--debug", "--offline"):
            assert opt in out
    assert "--mix-original" in invoke("dub", "--help").stdout


# ------------------------------------------------------------------------------------ bad input


def make_bad(tmp_path: Path, make_clip) -> dict[str, tuple[list[str], str, str]]:
    """name -> (command args, file named in the error, problem text)."""
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 10)
    data = make_clip(fps=25, duration=1.0, size=(160, 120), audio_rate=16_000).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "nomedia").mkdir()
    (tmp_path / "nomedia" / "readme.txt").write_text("x")
    shutil.copy(make_clip(fps=None, audio_rate=16_000, ext=".wav"), tmp_path / "voice.wav")
    shutil.copy(make_clip(fps=25), tmp_path / "mute.mp4")
    return {
        "missing": (["dub", tmp_path / "nope.mp4"], "nope.mp4", "no such file"),
        "folder": (["dub", tmp_path / "nomedia"], "nomedia", "no video files"),
        "empty": (["dub", tmp_path / "empty.mp4"], "empty.mp4", "empty file"),
        "truncated": (["dub", tmp_path / "cut.mp4"], "cut.mp4", "not a media file"),
        "text": (["dub", tmp_path / "notes.mp4"], "notes.mp4", "not a media file"),
        "audio_to_dub": (["dub", tmp_path / "voice.wav"], "voice.wav", "no video stream"),
        "mute_to_animate": (["animate", tmp_path / "mute.mp4"], "mute.mp4", "no audio stream"),
    }


BAD = ["missing", "folder", "empty", "truncated", "text", "audio_to_dub", "mute_to_animate"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_line_no_traceback_no_output(tmp_path, make_clip, case):
    args, name, problem = make_bad(tmp_path, make_clip)[case]
    before = sorted(tmp_path.rglob("*"))
    res = invoke(*args)
    lines = err_lines(res)
    assert res.exit_code == 1
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert name in lines[0] and problem in lines[0]
    assert "Traceback" not in res.output
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, not even a temp file


def test_output_folder_not_writable(clips, tmp_path):
    (tmp_path / "afile").write_text("x")
    res = invoke("dub", clips / "clip.mp4", "-o", tmp_path / "afile" / "out" / "x.mp4")
    assert res.exit_code == 1 and len(err_lines(res)) == 1
    assert "afile is not a folder" in res.stderr and not (tmp_path / "afile").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_output_folder_read_only(clips, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    res = invoke("dub", clips / "clip.mp4", "-o", ro / "x.mp4")
    assert res.exit_code == 1 and "not writable" in res.stderr


def test_existing_output_is_skipped_unless_overwrite(clips, fake_model):
    out = clips / "clip.dubbed.mp4"
    out.write_bytes(b"precious")
    res = invoke("dub", clips / "clip.mp4")  # a single input too: skipped, exit 0 (shell loops)
    assert res.exit_code == 0 and res.stdout == ""
    assert err_lines(res) == [f"skipped: {out} exists (--overwrite replaces it)"]
    assert out.read_bytes() == b"precious"
    assert invoke("dub", clips / "clip.mp4", "-q").stderr == ""
    res = invoke("dub", clips / "clip.mp4", "--overwrite")
    assert res.exit_code == 0, res.output
    assert media.probe(out).has_audio


def test_output_path_is_a_folder(clips, fake_model):
    (clips / "clip.dubbed.mp4").mkdir()
    res = invoke("dub", clips / "clip.mp4")
    assert res.exit_code == 1 and "clip.dubbed.mp4: is a folder" in res.stderr


@pytest.mark.parametrize(("cmd", "out"), [("dub", "x.avi"), ("animate", "x.wav"), ("dub", "x.gif")])
def test_unwritable_extension_is_a_usage_error(clips, cmd, out):
    src = clips / ("clip.mp4" if cmd == "dub" else "drums.wav")
    res = invoke(cmd, src, "-o", clips / out)
    assert res.exit_code == 2 and len(err_lines(res)) == 1
    assert out in res.stderr and "cannot write" in res.stderr


def test_click_usage_errors_exit_2(clips):
    assert invoke("dub", clips / "clip.mp4", "--device", "tpu").exit_code == 2
    assert invoke("dub", clips / "clip.mp4", "--steps", "0").exit_code == 2
    assert invoke("dub").exit_code == 2


# ------------------------------------------------------------------------------------ the model


def test_no_model_is_one_clear_line(clips):
    res = invoke("dub", clips / "clip.mp4", "--model", "no-such-model", "--offline")
    assert res.exit_code == 1
    # the message is hub.resolve_model's: one line naming the spec and what a model can be
    (line,) = err_lines(res)
    assert line.startswith("error: 'no-such-model' is not a model") and "model folder" in line
    assert sorted(p.name for p in clips.iterdir()) == ["clip.mp4", "drums.wav", "silent.mp4"]


def test_validation_comes_before_the_model(clips):
    res = invoke("animate", clips / "silent.mp4", "--model", "no-such-model")
    assert err_lines(res) == [
        f"error: {clips / 'silent.mp4'}: has no audio stream; animate needs sound"
    ]


def test_internal_error_one_line_unless_debug(clips, monkeypatch):
    monkeypatch.setattr(batch, "load_model", lambda o: FakeModel(RuntimeError("boom")))
    res = invoke("dub", clips / "clip.mp4")
    assert res.exit_code == 1 and err_lines(res) == [
        f"error: {clips / 'clip.mp4'}: RuntimeError: boom"
    ]
    res = invoke("dub", clips / "clip.mp4", "--debug")
    assert res.exit_code == 1 and "Traceback" in res.stderr and "boom" in res.stderr


# ------------------------------------------------------------------------------------ working runs


def test_dub_default_name_copies_video(clips, fake_model):
    res = invoke("dub", clips / "clip.mp4")
    assert res.exit_code == 0, res.output
    out = clips / "clip.dubbed.mp4"
    assert packet_md5s(out) == packet_md5s(clips / "clip.mp4")
    assert abs(media.probe(out).duration - media.probe(clips / "clip.mp4").duration) < 0.04


def test_dub_to_audio_mix_and_samples(clips, fake_model, tmp_path):
    res = invoke("dub", clips / "clip.mp4", "-o", tmp_path / "a.flac", "--samples", "2")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("a.*")) == ["a.0.flac", "a.1.flac"]
    res = invoke("dub", clips / "clip.mp4", "-o", tmp_path / "m.mkv", "--mix-original", "0.5")
    assert res.exit_code == 0 and media.probe(tmp_path / "m.mkv").has_audio
    res = invoke("dub", clips / "silent.mp4", "-o", tmp_path / "n.mp4", "--mix-original", "0.5")
    assert res.exit_code == 1 and "no soundtrack" in res.stderr


def test_animate_default_name(clips, fake_model):
    res = invoke("animate", clips / "drums.wav")
    assert res.exit_code == 0, res.output
    info = media.probe(clips / "drums.animated.mp4")
    assert info.has_video and info.has_audio and info.n_frames == 8


def test_animate_size_scales_only_the_written_video(clips, fake_model, tmp_path):
    res = invoke("animate", clips / "drums.wav", "-o", tmp_path / "big.mp4", "--size", "64x48")
    assert res.exit_code == 0, res.output
    info = media.probe(tmp_path / "big.mp4")
    assert info.display_hw == (48, 64) and info.n_frames == 8 and info.has_audio
    for bad in ("64", "63x48", "0x0", "64x48x2"):
        res = invoke("animate", clips / "drums.wav", "-o", tmp_path / "x.mp4", "--size", bad)
        assert res.exit_code == 2 and not (tmp_path / "x.mp4").exists()


def test_batch_goes_on_and_reports_at_the_end(clips, fake_model, tmp_path):
    (clips / "broken.mp4").write_text("nope")
    out = tmp_path / "out"
    res = invoke("dub", clips, "-o", out, "--json")
    assert res.exit_code == 1
    *records, total = [json.loads(ln) for ln in res.stdout.splitlines()]
    assert total == total | {"type": "summary", "inputs": 3, "ok": 2, "error": 1, "skipped": 0}
    by_name = {Path(r["input"]).name: r for r in records}
    assert set(by_name) == {"broken.mp4", "clip.mp4", "silent.mp4"}
    assert {r["type"] for r in records} == {"result"}
    assert {"input", "output", "status", "error", "seconds", "duration", "model"} <= set(records[0])
    assert by_name["broken.mp4"]["status"] == "error" and by_name["broken.mp4"]["output"] is None
    assert "not a media file" in by_name["broken.mp4"]["error"]
    for name in ("clip", "silent"):
        assert by_name[f"{name}.mp4"]["status"] == "ok"
        assert Path(by_name[f"{name}.mp4"]["output"]) == out / f"{name}.dubbed.mp4"
        assert media.probe(out / f"{name}.dubbed.mp4").has_audio
    lines = err_lines(res)
    assert lines[-1].startswith("error: 1 of 3 inputs failed") and "broken.mp4" in lines[-1]
    # a second run over the same folder skips the outputs that exist (resume); the bad file
    # still fails
    res = invoke("dub", clips / "*.mp4", "-o", out, "--json")
    lines = [json.loads(ln) for ln in res.stdout.splitlines()]
    records = {Path(r["input"]).name: r for r in lines if r["type"] == "result"}
    assert res.exit_code == 1 and "already exists" not in res.stderr
    assert records["clip.mp4"]["status"] == records["silent.mp4"]["status"] == "skipped"


def test_one_output_file_for_many_inputs_is_refused(clips):
    res = invoke("dub", clips / "clip.mp4", clips / "silent.mp4", "-o", clips / "x.mp4")
    assert res.exit_code == 2 and "-o must be a folder" in res.stderr


def test_plan_outputs_names():
    plan = batch.plan_outputs
    assert plan([Path("a/clip.mp4")], None, batch.DUB, 1) == [[Path("a/clip.dubbed.mp4")]]
    assert plan([Path("clip.avi")], None, batch.DUB, 1) == [[Path("clip.dubbed.mkv")]]
    assert plan([Path("drums.wav")], None, batch.ANIMATE, 1) == [[Path("drums.animated.mp4")]]
    assert plan([Path("drums.wav")], "o/", batch.ANIMATE, 1) == [[Path("o/drums.animated.mp4")]]
    assert plan([Path("c.mp4")], "x.wav", batch.DUB, 2) == [[Path("x.0.wav"), Path("x.1.wav")]]


# ------------------------------------------------------------------------------------ subprocess


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "avlink_cli", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)


def test_real_process_bad_inputs(tmp_path, make_clip):
    bad = make_bad(tmp_path, make_clip)
    for case in ("missing", "text", "mute_to_animate"):
        args, name, problem = bad[case]
        res = run_cli(*args)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.strip().count("\n") == 0 and name in res.stderr and problem in res.stderr
    res = run_cli("dub", tmp_path / "mute.mp4", "--no-such-option")
    assert res.returncode == 2


def test_preview_png_beside_each_output(clips, fake_model, tmp_path):
    res = invoke("dub", clips / "clip.mp4", "-o", tmp_path / "d.mp4", "--preview", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["previews"] == [str(tmp_path / "d.png")]
    res = invoke("animate", clips / "drums.wav", "-o", tmp_path / "a.mp4", "--preview")
    assert res.exit_code == 0, res.output
    for name in ("d.png", "a.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
