"""Inputs of any length: the window plan, stitching, the seam inpainting (analytically and as the
scheduler runs it), and long inputs through the CLI coming back at exactly their duration."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from tiny_model import make_model_folder
from typer.testing import CliRunner

from avlink_cli import flow, longform, media
from avlink_cli.cli import app
from avlink_cli.options import Sampling
from avlink_cli.pipeline import Engine, inpainted
from avlink_cli.presets import PRESETS, TINY
from avlink_cli.windows import Stitcher, WindowPlan, crossfade, time_quantum

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")


def test_time_quantum_holds_whole_tokens():
    for preset in PRESETS.values():
        q = time_quantum(preset)
        assert q == 1  # 8, 12, 6 fps against 25 audio tokens/s
        for rate in (preset.video.tokens_per_second, preset.audio.tokens_per_second):
            assert (q * Fraction(rate)).denominator == 1


@pytest.mark.parametrize("duration", [0.3, 2.0, 2.01, 7.0, 7.3, 60.0])
def test_window_plan_covers_the_input(duration):
    plan = WindowPlan.make(TINY, duration, overlap=1.0)
    starts = [float(s) for s in plan.starts]
    assert starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:], strict=False))
    assert all(float(s) == int(s) for s in plan.starts)  # on the 1 s grid
    assert all(b - a <= 1.0 for a, b in zip(starts, starts[1:], strict=False))  # >= 1 s overlap
    end = starts[-1] + TINY.duration
    assert duration <= end + 1e-9 and (len(plan) == 1 or end - duration < 1.0)
    assert len(plan) == (1 if duration <= 2 else 1 + math.ceil(duration - 2 - 1e-9))


def test_window_plan_rejects_an_overlap_with_no_stride():
    assert len(WindowPlan.make(TINY, 7.0, overlap=0.2)) == 6  # rounded up to the 1 s grid
    with pytest.raises(ValueError, match="no stride"):
        WindowPlan.make(TINY, 7.0, overlap=2.0)


def stitch(windows, starts, total, *, equal_power):
    out = []
    s = Stitcher(total, out.append, equal_power=equal_power)
    for k, (start, w) in enumerate(zip(starts, windows, strict=True)):
        s.add(start, w, starts[k + 1] if k + 1 < len(starts) else None)
        if k == 0:
            assert sum(map(len, out)) == starts[1]  # written before the next window exists
    return np.concatenate(out)


def test_stitcher_frames_linear_and_exact_length():
    video = np.random.default_rng(0).integers(0, 256, (30, 2, 2, 3), dtype=np.uint8)
    starts = [0, 8, 16, 22]  # windows of 10 frames, the last past the end
    windows = [np.pad(video[s : s + 10], [(0, max(0, s + 10 - 30))] + [(0, 0)] * 3) for s in starts]
    assert np.array_equal(stitch(windows, starts, 29, equal_power=False), video[:29])


def test_stitcher_audio_equal_power():
    starts, n = [0, 60], 100
    a, b = np.ones(n, np.float32), np.full(n, 2.0, np.float32)
    out = stitch([a, b], starts, 150, equal_power=True)
    u = (np.arange(40) + 0.5) / 40
    assert len(out) == 150 and np.all(out[:60] == 1) and np.all(out[100:] == 2)
    np.testing.assert_allclose(out[60:100], np.cos(u * np.pi / 2) + 2 * np.sin(u * np.pi / 2))
    frames = crossfade(
        np.zeros((4, 1), np.uint8), np.full((4, 1), 200, np.uint8), equal_power=False
    )
    assert frames.dtype == np.uint8 and frames[:, 0].tolist() == [25, 75, 125, 175]


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_inpainting_holds_known_tokens_on_the_flow_path(method):
    """At every step the known tokens sit at flow.interpolate(x0, known, t); at t = 1 on known."""
    g = torch.Generator().manual_seed(0)
    x0, known = torch.randn(2, 6, 3, generator=g), torch.randn(2, 6, 3, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    seen = []

    def v(x, t):  # any field: the free tokens depend on the held ones through it
        return torch.sin(x) - x.mean(1, keepdim=True) * t[:, None, None]

    ts = flow.time_grid(5, shift=2.0)
    x = flow.sample(
        inpainted(v, x0, known, mask),
        x0,
        steps=5,
        method=method,
        shift=2.0,
        callback=lambda i, n, x: seen.append((ts[i], x.clone())),
    )
    for t, xt in seen:
        path = flow.interpolate(x0, known, t.expand(2))
        torch.testing.assert_close(xt[mask], path[mask], atol=1e-6, rtol=0)
    torch.testing.assert_close(x[mask], known[mask], atol=1e-6, rtol=0)
    free = flow.sample(v, x0, steps=5, method=method, shift=2.0)
    assert torch.equal(x[1], free[1])  # a row with nothing known is sampled as without
    assert not torch.allclose(x[0, 3:], free[0, 3:])  # the rest follows what is held


def test_each_window_continues_the_previous_one(folder, monkeypatch):
    """Window k + 1's overlap tokens are window k's last tokens, exactly."""
    engine = Engine.from_folder(str(folder))
    calls = []
    real = engine.sample

    def record(direction, cond, **kw):
        out = real(direction, cond, **kw)
        calls.append((kw.get("known"), kw.get("known_mask"), out))
        return out

    monkeypatch.setattr(engine, "sample", record)
    wav = torch.randn(2, 16_000 * 7) * 0.1  # 3.5 windows, 6 of them
    video = longform.animate(engine, wav, Sampling(steps=2))
    assert video.shape == (2, 56, 16, 16, 3) and len(calls) == 6
    per_second = TINY.video.tokens_per_second * TINY.video.tokens_per_frame_group
    assert calls[0][0] is None
    for (_, _, prev), (known, mask, out) in zip(calls, calls[1:], strict=False):
        shift = int(1.0 * per_second)  # windows start 1 s apart
        n = prev.shape[1] - shift
        assert mask[:, :n].all() and not mask[:, n:].any()
        assert torch.equal(known[:, :n], prev[:, shift:]) and torch.equal(
            out[:, :n], prev[:, shift:]
        )


def test_long_inputs_come_back_at_their_duration(folder, make_clip, tmp_path):
    run = CliRunner()
    clip = make_clip(fps=24, duration=7.0, size=(32, 24), audio_rate=16_000)  # 3.5 windows
    res = run.invoke(
        app,
        ["dub", str(clip), "-o", str(tmp_path / "d.mp4"), "--model", str(folder), "--steps", "2"],
    )
    assert res.exit_code == 0, res.output
    out = media.probe(tmp_path / "d.mp4")
    assert out.n_frames == 168 and abs(out.audio_duration - 7.0) < 0.03
    wav = media.read_audio(tmp_path / "d.mp4", sample_rate=16_000)
    assert np.abs(wav[-1600:]).max() > 0  # generated to the very end, not padded silence
    sound = make_clip(fps=None, audio_rate=16_000, ext=".wav", duration=7.3)
    res = run.invoke(
        app,
        ["animate", str(sound), "-o", str(tmp_path / "a.mp4"), "--model", str(folder)]
        + ["--steps", "2", "--overlap", "0.5"],
    )
    assert res.exit_code == 0, res.output
    out = media.probe(tmp_path / "a.mp4")
    assert out.n_frames == round(7.3 * 8) and abs(out.audio_duration - out.duration) < 0.05
