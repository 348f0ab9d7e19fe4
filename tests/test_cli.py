"""The avlink CLI: fast help, bad input handling, batches, output naming, exit codes.

Most tests run through typer's CliRunner; a few as a real ``python -m avlink_cli`` process. The
working runs take the path users take, with a real model: ``tiny_model`` (conftest.py), a
tiny-preset folder with random weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import packet_md5s
from typer.testing import CliRunner

from avlink_cli import batch, media, outputs
from avlink_cli.cli import app
from avlink_cli.pipeline import Engine

REPO = Path(__file__).resolve().parent.parent


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


def test_existing_output_is_skipped_unless_overwrite(clips, tiny_model):
    out = clips / "clip.dubbed.mp4"
    out.write_bytes(b"precious")
    # a single input too: skipped, exit 0 (shell loops)
    res = invoke("dub", clips / "clip.mp4", "-m", tiny_model)
    assert res.exit_code == 0 and res.stdout == ""
    assert err_lines(res) == [f"skipped: {out} exists (--overwrite replaces it)"]
    assert out.read_bytes() == b"precious"
    assert invoke("dub", clips / "clip.mp4", "-q", "-m", tiny_model).stderr == ""
    res = invoke("dub", clips / "clip.mp4", "--overwrite", "-m", tiny_model)
    assert res.exit_code == 0, res.output
    assert media.probe(out).has_audio


def test_output_path_is_a_folder(clips, tiny_model):
    (clips / "clip.dubbed.mp4").mkdir()
    res = invoke("dub", clips / "clip.mp4", "-m", tiny_model)
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


def test_internal_error_one_line_unless_debug(clips, tiny_model, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "sample", boom)
    res = invoke("dub", clips / "clip.mp4", "-m", tiny_model)
    assert res.exit_code == 1 and err_lines(res) == [
        f"error: {clips / 'clip.mp4'}: RuntimeError: boom"
    ]
    res = invoke("dub", clips / "clip.mp4", "-m", tiny_model, "--debug")
    assert res.exit_code == 1 and "Traceback" in res.stderr and "boom" in res.stderr


# ------------------------------------------------------------------------------------ working runs


def test_dub_default_name_copies_video(clips, tiny_model):
    res = invoke("dub", clips / "clip.mp4", "-m", tiny_model)
    assert res.exit_code == 0, res.output
    out = clips / "clip.dubbed.mp4"
    assert packet_md5s(out) == packet_md5s(clips / "clip.mp4")
    assert abs(media.probe(out).duration - media.probe(clips / "clip.mp4").duration) < 0.04


def test_dub_to_audio_mix_and_samples(clips, tiny_model, tmp_path):
    res = invoke(
        "dub", clips / "clip.mp4", "-o", tmp_path / "a.flac", "--samples", "2", "-m", tiny_model
    )
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("a.*")) == ["a.0.flac", "a.1.flac"]
    res = invoke(
        "dub",
        clips / "clip.mp4",
        "-o",
        tmp_path / "m.mkv",
        "--mix-original",
        "0.5",
        "-m",
        tiny_model,
    )
    assert res.exit_code == 0 and media.probe(tmp_path / "m.mkv").has_audio
    res = invoke(
        "dub",
        clips / "silent.mp4",
        "-o",
        tmp_path / "n.mp4",
        "--mix-original",
        "0.5",
        "-m",
        tiny_model,
    )
    assert res.exit_code == 1 and "no soundtrack" in res.stderr


def test_animate_default_name(clips, tiny_model):
    res = invoke("animate", clips / "drums.wav", "-m", tiny_model)
    assert res.exit_code == 0, res.output
    info = media.probe(clips / "drums.animated.mp4")
    assert info.has_video and info.has_audio and info.n_frames == 8


def test_animate_size_scales_only_the_written_video(clips, tiny_model, tmp_path):
    res = invoke(
        "animate",
        clips / "drums.wav",
        "-o",
        tmp_path / "big.mp4",
        "--size",
        "64x48",
        "-m",
        tiny_model,
    )
    assert res.exit_code == 0, res.output
    info = media.probe(tmp_path / "big.mp4")
    assert info.display_hw == (48, 64) and info.n_frames == 8 and info.has_audio
    for bad in ("64", "63x48", "0x0", "64x48x2"):
        res = invoke(
            "animate",
            clips / "drums.wav",
            "-o",
            tmp_path / "x.mp4",
            "--size",
            bad,
            "-m",
            tiny_model,
        )
        assert res.exit_code == 2 and not (tmp_path / "x.mp4").exists()


def test_batch_goes_on_and_reports_at_the_end(clips, tiny_model, tmp_path):
    (clips / "broken.mp4").write_text("nope")
    out = tmp_path / "out"
    res = invoke("dub", clips, "-o", out, "--json", "-m", tiny_model)
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
    res = invoke("dub", clips / "*.mp4", "-o", out, "--json", "-m", tiny_model)
    lines = [json.loads(ln) for ln in res.stdout.splitlines()]
    records = {Path(r["input"]).name: r for r in lines if r["type"] == "result"}
    assert res.exit_code == 1 and "already exists" not in res.stderr
    assert records["clip.mp4"]["status"] == records["silent.mp4"]["status"] == "skipped"


def test_one_output_file_for_many_inputs_is_refused(clips):
    res = invoke("dub", clips / "clip.mp4", clips / "silent.mp4", "-o", clips / "x.mp4")
    assert res.exit_code == 2 and "-o must be a folder" in res.stderr


def test_plan_outputs_names():
    plan, dub, animate = outputs.plan_outputs, outputs.DUB, outputs.ANIMATE
    assert plan([Path("a/clip.mp4")], None, dub, 1) == [[Path("a/clip.dubbed.mp4")]]
    assert plan([Path("clip.avi")], None, dub, 1) == [[Path("clip.dubbed.mkv")]]
    assert plan([Path("drums.wav")], None, animate, 1) == [[Path("drums.animated.mp4")]]
    assert plan([Path("drums.wav")], "o/", animate, 1) == [[Path("o/drums.animated.mp4")]]
    assert plan([Path("c.mp4")], "x.wav", dub, 2) == [[Path("x.0.wav"), Path("x.1.wav")]]


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


def test_preview_png_beside_each_output(clips, tiny_model, tmp_path):
    res = invoke(
        "dub", clips / "clip.mp4", "-o", tmp_path / "d.mp4", "--preview", "--json", "-m", tiny_model
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["previews"] == [str(tmp_path / "d.png")]
    res = invoke(
        "animate", clips / "drums.wav", "-o", tmp_path / "a.mp4", "--preview", "-m", tiny_model
    )
    assert res.exit_code == 0, res.output
    for name in ("d.png", "a.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


# ------------------------------------------------------------------------------------ issue 26


@pytest.mark.parametrize(("layout", "channels"), [("stereo", 2), ("7.1", 8)])
def test_animate_keeps_the_inputs_channels(make_clip, tmp_path, tiny_model, layout, channels):
    src = tmp_path / f"{layout}.wav"
    shutil.copy(make_clip(fps=None, audio_rate=44_100, layout=layout, ext=".wav"), src)
    res = invoke("animate", src, "-m", tiny_model)
    assert res.exit_code == 0, res.output
    info = media.probe(tmp_path / f"{layout}.animated.mp4")
    assert (info.channels, info.sample_rate) == (channels, media.VIDEO_RATE)


TINY_TRAIN = ["train", "audio", "-o", "{out}", "--preset", "tiny", "--steps", "1", "--clips", "2"]
TINY_TRAIN += ["--val-clips", "1", "--workers", "1", "--cache", "{cache}", "--device", "cpu"]


@pytest.mark.parametrize(
    "args",
    [
        ["dub", "{clip}", "--cfg", "inf"],
        ["dub", "{clip}", "--cfg", "nan"],
        ["dub", "{clip}", "--mix-original", "inf"],
        ["dub", "{clip}", "--overlap", "inf"],
        ["animate", "{wav}", "--cfg", "inf"],
        ["bench", "--preset", "tiny", "--steps", "1", "--cfg", "inf"],
        [*TINY_TRAIN, "--lr", "nan"],
        [*TINY_TRAIN, "--time-limit", "inf"],
    ],
)
def test_inf_and_nan_are_usage_errors(clips, tmp_path, args):
    # (each refuses before any model loads: tiny preset and one step, were the check to go)
    paths = {"clip": clips / "clip.mp4", "wav": clips / "drums.wav", "out": tmp_path / "m"}
    paths["cache"] = tmp_path / "cache"
    res = invoke(*(a.format(**paths) for a in args))
    # inf: ours; nan fails a min= range check first, where there is one (click's message)
    why = "is not a finite number" if "nan" not in args or "--lr" in args else "greater than"
    assert res.exit_code == 2 and why in res.output and args[-2] in res.output, res.output
    assert not (tmp_path / "m").exists() and not list(clips.glob("*.dubbed.*"))


def test_overlap_is_checked_before_the_model_loads(make_clip, tmp_path, monkeypatch):
    """The tiny model's windows are 2 s on a 1 s grid: 1 s of overlap at most."""
    from tiny_model import make_model_folder

    folder = make_model_folder(tmp_path / "tiny")

    def no_model(opts):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(batch, "load_model", no_model)
    clip = make_clip(fps=25, duration=5.0)
    for overlap in ("2", "1.5"):
        res = invoke("dub", clip, "-o", tmp_path / "o.mp4", "--model", folder, "--overlap", overlap)
        assert res.exit_code == 2, res.output
        assert err_lines(res) == [
            f"error: --overlap {overlap}: the model's windows are 2 s long; "
            "the overlap must be at most 1 s"
        ]
    assert not (tmp_path / "o.mp4").exists()


def test_overlap_is_a_usage_error_within_seconds_for_the_default_model(make_clip, tmp_path):
    """The bar: `avlink dub <60 s clip> --overlap 4` exits 2 quickly, before any model load."""
    clip = make_clip(fps=12, duration=60.0, size=(32, 32))
    t0 = time.perf_counter()
    res = run_cli("dub", clip, "-o", tmp_path / "o.mp4", "--overlap", "4")
    wall = time.perf_counter() - t0
    assert res.returncode == 2 and "the overlap must be at most 3 s" in res.stderr, res.stderr
    assert wall < 10  # 3 s asked; generous for a loaded machine (measured: see the report)


@pytest.mark.parametrize("size", [(2, 2), (1, 1)])
def test_a_tiny_video_is_dubbed(make_clip, tmp_path, tiny_model, size):
    clip = tmp_path / "tiny.mp4"
    shutil.copy(make_clip(fps=10, duration=1.0, size=size, pattern="testsrc"), clip)
    res = invoke("dub", clip, "-m", tiny_model)
    assert res.exit_code == 0, res.output
    assert packet_md5s(tmp_path / "tiny.dubbed.mp4") == packet_md5s(clip)


def _read_only(folder: Path) -> str | None:
    """Make `folder` refuse new files for real; how it was done, or None when it cannot be."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return "chmod"
    res = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if res.returncode == 0 and subprocess.run(["touch", str(folder / "x")]).returncode != 0:
        return "chattr"
    subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    return None


@pytest.fixture
def read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    how = _read_only(ro)
    if how is None:
        pytest.skip("no way to make a read-only folder here (root without chattr)")
    yield ro
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(ro)], check=True)
    ro.chmod(0o755)


@pytest.mark.parametrize("target", ["folder", "file"])
def test_unwritable_output_folder_is_one_line(clips, read_only_folder, tiny_model, target):
    """The same message for `-o ro/` (a batch: outputs and manifest) as for `-o ro/x.mp4`."""
    ro = read_only_folder
    out = ro if target == "folder" else ro / "x.mp4"
    res = invoke("dub", clips / "clip.mp4", clips / "silent.mp4", "-o", out, "-m", tiny_model)
    if target == "file":
        res = invoke("dub", clips / "clip.mp4", "-o", out, "-m", tiny_model)
    assert res.exit_code == 1
    (line,) = err_lines(res)
    name = "avlink-manifest.jsonl" if target == "folder" else "x.mp4"
    assert line.startswith(f"error: {ro / name}: cannot write there, folder {ro} is not writable")
    assert "Errno" not in line and "OSError" not in line
    assert list(ro.iterdir()) == []


def test_hidden_files_and_partial_outputs_are_not_inputs(clips, tiny_model):
    """What a killed run left (`.clip.dubbed.<rand>.mp4` of older versions, or a claimed
    temporary output) and any hidden file are skipped in folders and globs."""
    for name in (".clip.dubbed.abc123.mp4", ".clip.dubbed.x1y2.avlink-part.mp4", ".hidden.mp4"):
        shutil.copy(clips / "clip.mp4", clips / name)
    res = invoke("dub", clips, "--json", "-m", tiny_model)
    assert res.exit_code == 0, res.output
    records = [json.loads(ln) for ln in res.stdout.splitlines()]
    inputs = sorted(Path(r["input"]).name for r in records if r["type"] == "result")
    assert inputs == ["clip.mp4", "silent.mp4"]
    logged = [json.loads(ln)["input"] for ln in (clips / "avlink-manifest.jsonl").open()]
    assert sorted(Path(p).name for p in logged) == ["clip.mp4", "silent.mp4"]
    # a glob skips them too
    assert invoke("dub", clips / "*.mp4", "--json", "-m", tiny_model).exit_code == 0
    assert not [p for p in clips.iterdir() if p.name.startswith(".") and "dubbed.dubbed" in p.name]
    res = invoke("dub", clips / ".hidden.mp4")  # named one by one, it is an input
    assert res.exit_code == 0 and (clips / ".hidden.dubbed.mp4").is_file()
