"""`avlink train` on the tiny preset: every stage lowers its loss, the folder it writes loads,
a real-video folder trains, SIGKILL + resume ends where an uninterrupted run ends, and
torchrun with 2 processes matches one process with the same global batch."""

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
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from avlink_cli.checkpoint import load_model
from avlink_cli.cli import app
from avlink_cli.training.loop import LoopConfig
from avlink_cli.training.run import STAGES, DataSpec, train_stage

FIXTURES = Path(__file__).with_name("fixtures")
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _train(stage, out, cache_dir, *, steps, seed=0, lr=2e-3):
    return train_stage(
        stage,
        preset=__import__("avlink_cli.presets", fromlist=["x"]).get_preset("tiny"),
        out=out,
        data=DataSpec("avsynth", train_count=48, val_count=16, seed=seed),
        cache_dir=cache_dir,
        loop=LoopConfig(steps=steps, batch_size=8, lr=lr, warmup=2, ckpt_every=20, log_every=5),
        device=torch.device("cpu"),
        workers=1,
    )


@pytest.mark.slow
def test_every_stage_lowers_its_validation_loss_and_the_folder_loads(tmp_path, cache_dir):
    out = tmp_path / "model"
    for stage in STAGES:
        s = _train(stage, out, cache_dir, steps=40, lr=5e-3 if stage == "fusion" else 2e-3)
        # validation loss on a fixed batch with fixed noise: before vs after training. Fusion
        # starts exactly at the generators' loss (zero gates) and moves it less in 40 steps.
        assert s["val_loss"] < (1.0 if stage == "fusion" else 0.97) * s["val_loss_start"], s
    loaded = load_model(out)
    assert loaded.complete and loaded.vocoder is not None
    assert set(loaded.loaded) >= {"video_dit", "audio_dit", "text", "fusion", "vocoder"}
    info = json.loads((out / "model.json").read_text())
    assert {f"train_{s}" for s in STAGES} <= set(info["meta"])
    # the fusion stage really moved the gates off zero: AV-Link no longer equals the generator
    gates = [p for n, p in loaded.model.fusion.named_parameters() if "gate" in n or "adaLN" in n]
    assert any(p.abs().sum() > 0 for p in gates)


def test_stages_leave_frozen_parts_untouched(tmp_path, cache_dir):
    out = tmp_path / "model"
    _train("audio", out, cache_dir, steps=5)
    before = load_file(out / "audio_dit.safetensors")
    _train("video", out, cache_dir, steps=5)
    after = load_file(out / "audio_dit.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_real_video_folder_trains(tmp_path, cache_dir):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):  # Big Buck Bunny (CC-BY, Blender Foundation), 2 s with 5.1 sound
        shutil.copy(FIXTURES / "bigbuckbunny_2s.mp4", videos / f"bunny{i}.mp4")
    (videos / "captions.csv").write_text("file,caption\nbunny0.mp4,a rabbit in a meadow\n")
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "model"
    s = train_stage(
        "audio",
        preset=__import__("avlink_cli.presets", fromlist=["x"]).get_preset("tiny"),
        out=out,
        data=DataSpec(str(videos), train_count=10, val_count=1),
        cache_dir=cache_dir,
        loop=LoopConfig(steps=4, batch_size=2, lr=1e-3, warmup=1, ckpt_every=2),
        device=torch.device("cpu"),
        workers=1,
    )
    assert s["steps"] == 4 and (out / "audio_dit.safetensors").is_file()
    caches = [json.loads(p.read_text()) for p in cache_dir.glob("tiny-*/meta.json")]
    real = [c for c in caches if c["source"] == str(videos)]
    assert sorted(c["n"] for c in real) == [1, 2]  # 3 windows: 2 train, 1 val
    assert "a rabbit in a meadow" in sum((c["captions"] for c in real), [])


def _cli(out: Path, cache: Path, stage: str, steps: int) -> list[str]:
    return [
        "train", stage, "--preset", "tiny", "--out", str(out), "--cache", str(cache),
        "--clips", "32", "--val-clips", "8", "--steps", str(steps), "--batch-size", "8",
        "--workers", "1", "--device", "cpu", "--json",
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_train_sigkill_then_resume_matches_uninterrupted(tmp_path, cache_dir):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    res = CliRunner().invoke(app, _cli(ref, cache_dir, "audio", 30))
    assert res.exit_code == 0, res.output
    cmd = [sys.executable, "-m", "avlink_cli", *_cli(killed, cache_dir, "audio", 30)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / ".train" / "audio" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "audio_dit.safetensors").exists(), "killed too late to test resume"
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["steps"] == 30
    a, b = load_file(ref / "audio_dit.safetensors"), load_file(killed / "audio_dit.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path, cache_dir):
    one, two = tmp_path / "one", tmp_path / "two"
    base = [sys.executable, "-m", "avlink_cli"]
    subprocess.run(
        [*base, *_cli(one, cache_dir, "fusion", 6)],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )
    run2 = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "avlink_cli"]
    res = subprocess.run(
        [*run2, *_cli(two, cache_dir, "fusion", 6)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = load_file(one / "fusion.safetensors"), load_file(two / "fusion.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5)


def test_from_nothing_to_a_folder_that_dub_and_animate_load(tmp_path, cache_dir):
    """The whole pipeline through the CLI: synth clips, train every stage, dub and animate."""
    runner = CliRunner()
    clips = tmp_path / "clips"
    res = runner.invoke(app, ["synth", str(clips), "--split", "test", "--count", "2", "--preset", "tiny", "--workers", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = tmp_path / "model"
    res = runner.invoke(app, _cli(out, cache_dir, "all", 4))
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["stage"] for line in res.stdout.splitlines()] == list(STAGES)
    video = clips / "test-0000000.mp4"
    res = runner.invoke(app, ["dub", str(video), "-o", str(tmp_path / "dub.mp4"), "--model", str(out), "--steps", "2", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["animate", str(video), "-o", str(tmp_path / "anim.mp4"), "--model", str(out), "--steps", "2", "--device", "cpu"])  # fmt: skip
    assert res.exit_code == 0, res.output
    from avlink_cli import media

    for name in ("dub.mp4", "anim.mp4"):
        info = media.probe(tmp_path / name)
        assert info.has_video and info.has_audio and abs(info.duration - 2.0) < 0.1


def test_silent_weight_stresses_the_clips_where_nothing_sounds():
    from avlink_cli.avlink import AVLink
    from avlink_cli.presets import get_preset
    from avlink_cli.training.stages import FusionStage

    p = get_preset("tiny")
    with torch.device("meta"):
        model = AVLink(p)
    contacts = torch.zeros(3, p.n_frames, dtype=torch.bool)
    contacts[0, 5] = True  # clip 0 has a contact, clips 1 and 2 none
    mel = torch.randn(3, p.audio.n_mels, p.n_audio_tokens * p.audio.frames_per_token)
    x1 = torch.zeros(3, p.n_audio_tokens, p.audio.token_dim)
    batch = {"contacts": contacts, "mel": mel}
    w = FusionStage(model, silent_weight=2.0).v2a_weights(batch, x1)
    assert torch.equal(w, torch.tensor([1.0, 3.0, 3.0])[:, None].expand(3, p.n_audio_tokens))
    both = FusionStage(model, onset_weight=3.0, silent_weight=2.0).v2a_weights(batch, x1)
    onset = FusionStage(model, onset_weight=3.0).v2a_weights(batch, x1)
    assert torch.allclose(both, onset * torch.tensor([1.0, 3.0, 3.0])[:, None])
    no_labels = FusionStage(model, silent_weight=2.0).v2a_weights({"mel": mel}, x1)
    assert torch.equal(no_labels, torch.ones_like(w))  # without contact labels nothing changes


def test_onset_weights_stress_the_tokens_where_a_sound_starts():
    from avlink_cli import flow
    from avlink_cli.codecs import log_mel
    from avlink_cli.presets import get_preset
    from avlink_cli.synth import render_clip
    from avlink_cli.training.stages import onset_weights, weighted_flow_loss

    p = get_preset("tiny")
    hits = sounding = 0
    for seed in range(12):
        clip = render_clip(p, seed=seed, split="val")
        events = [e["time"] for e in clip.sidecar["events"]]
        if not events:
            continue
        mel = log_mel(torch.from_numpy(clip.audio)[None], p.audio)
        mel = mel[..., : p.n_audio_tokens * p.audio.frames_per_token]
        w = onset_weights(mel, p.audio.frames_per_token, 3.0)[0]  # (N_a,)
        assert w.shape == (p.n_audio_tokens,) and bool((w >= 1).all())
        assert w.mean().item() == pytest.approx(1 + 3.0, rel=1e-4)  # 1 + alpha on average
        # the tokens of largest weight (a plateau of 3) hold one within a token of a sound's start
        per_token = p.duration / p.n_audio_tokens
        assert w.max() > 2.5 * w.median(), w  # peaked, not flat
        top = torch.nonzero(w >= w.max() - 1e-4).flatten().tolist()
        hits += min(abs(k * per_token - t) for k in top for t in events) <= 1.01 * per_token
        sounding += 1
    assert sounding >= 8 and hits >= sounding - 1, (hits, sounding)
    # equal weights give the plain loss; weights move it towards the stressed tokens' error
    g = torch.Generator().manual_seed(0)
    v, x0, x1 = (torch.randn(2, 10, 4, generator=g) for _ in range(3))
    assert weighted_flow_loss(v, x0, x1, torch.full((2, 10), 3.0)).item() == pytest.approx(
        flow.loss(v, x0, x1).item(), rel=1e-5
    )
    x1b = x1.clone()
    x1b[:, 0] += 10  # a large error on token 0 only
    w = torch.ones(2, 10)
    w[:, 0] = 5
    assert weighted_flow_loss(v, x0, x1b, w) > flow.loss(v, x0, x1b)


@pytest.mark.slow
def test_motion_context_learns_to_mark_contacts():
    """Real training steps of MotionContext with the contact loss's read-out, on AVSynth clips of
    the tiny preset: its contact logits go from chance towards finding held-out contact frames."""
    from dataclasses import replace

    import numpy as np

    from avlink_cli.codecs import video_to_tokens
    from avlink_cli.fusion import Fusion
    from avlink_cli.presets import get_preset
    from avlink_cli.synth import render_clip
    from avlink_cli.training.run import contact_frames
    from avlink_cli.training.stages import ContactHead

    tiny = get_preset("tiny")
    p = tiny.with_(fusion=replace(tiny.fusion, motion=True, motion_context=32))

    def data(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        clips = [render_clip(p, seed=i, split=split) for i in range(n)]
        labels = torch.from_numpy(contact_frames([c.sidecar["events"] for c in clips], p))
        frames = torch.from_numpy(np.stack([c.frames for c in clips]))
        return video_to_tokens(frames, p.video), labels.float()

    def auc(score: torch.Tensor, label: torch.Tensor) -> float:
        pos, neg = score[label == 1], score[label == 0]
        return float((pos[:, None] > neg[None]).float().mean())

    x, y = data("train", 192)
    xv, yv = data("val", 48)
    torch.manual_seed(0)
    fusion = Fusion.for_preset(p)
    head = ContactHead(p.fusion.blocks, p.fusion.width, p.video.tokens_per_frame_group,
                       context_width=32)  # fmt: skip
    params = [*fusion.context.parameters(), *head.context.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    pos_weight = torch.tensor(float((1 - y.mean()) / y.mean()))

    def bce(tok: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        logits = head.context_logits(fusion.context_features(tok))
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, lab, pos_weight=pos_weight
        )

    with torch.no_grad():
        start = auc(head.context_logits(fusion.context_features(xv)).flatten(), yv.flatten())
        loss_start = bce(x, y).item()
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(len(x), (32,), generator=g)
        loss = bce(x[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = auc(head.context_logits(fusion.context_features(xv)).flatten(), yv.flatten())
        loss_end = bce(x, y).item()
    assert loss_end < 0.8 * loss_start, (loss_start, loss_end)
    # 0.69 here (16x16 frames, 8 fps); 0.75 after 200 steps at avsynth-s's 32x32, 12 fps
    assert end > 0.63 and end > start + 0.08, (start, end)


@pytest.mark.slow
def test_train_default_script_makes_a_complete_folder_within_its_budget(tmp_path, cache_dir):
    """scripts/train_default.py, the one command that remakes the default model: calibrates,
    plans steps from what is left of the budget, trains the four stages with the shipped Fusion
    recipe, and leaves a complete folder and its TRAINING.json record."""
    out = tmp_path / "model"
    cmd = [sys.executable, str(Path(__file__).parents[1] / "scripts" / "train_default.py"),
           "--out", str(out), "--preset", "tiny", "--budget-minutes", "1", "--device", "cpu",
           "--clips", "16", "--val-clips", "4", "--workers", "1", "--calib-steps", "3",
           "--cache", str(cache_dir)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    record = json.loads((out / "TRAINING.json").read_text())
    assert list(record["plan"]) == list(STAGES)
    assert [s["stage"] for s in record["stages"]] == list(STAGES)
    assert all(s["steps"] > 0 for s in record["stages"])
    fusion_cmd = [line for line in res.stdout.splitlines() if line.startswith(f"+ avlink train fusion --out {out} ")]  # fmt: skip
    assert len(fusion_cmd) == 1 and "--onset-weight 3" in fusion_cmd[0]
    assert "--contact-hint 0" in fusion_cmd[0]
    loaded = load_model(out, device=torch.device("cpu"))  # the manifest verifies
    assert loaded.complete and loaded.meta["steps"] == {"v2a": 16, "a2v": 25}
    assert loaded.meta["train_default"]["plan"] == record["plan"]
    assert not out.with_name("model.calibration").exists()
