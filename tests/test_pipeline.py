"""The inference pipeline: Engine tensors in/out, seeds, batching, defaults, and dub/animate end to
end through the CLI (CliRunner and a real process) on a random tiny model folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_model import make_model_folder
from typer.testing import CliRunner

from avlink_cli import flow, longform, media, pipeline
from avlink_cli.cli import app
from avlink_cli.codecs import GriffinLim
from avlink_cli.devices import resolve_device, resolve_dtype
from avlink_cli.hub import HubError
from avlink_cli.options import Sampling
from avlink_cli.pipeline import Engine, clip_seed
from avlink_cli.presets import TINY

REPO = Path(__file__).resolve().parent.parent
torch.set_num_threads(1)  # two cores shared with other test processes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="module")
def engine(folder) -> Engine:
    return Engine.from_folder(str(folder), device="cpu")


def frames(batch: int, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, n, 16, 16, 3), generator=g, dtype=torch.uint8)


TWO = Sampling(steps=2)


def assert_same_clip(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal up to float rounding: CPU GEMM kernels round differently for other row counts (a
    token differs by ~1e-7, Griffin-Lim's 32 iterations make that a few 1e-3 at single samples)."""
    assert a.shape == b.shape
    assert (a - b).abs().max() < 2e-2 and (a - b).abs().mean() < 1e-4


def test_loads_with_meta_defaults(engine):
    assert engine.default_steps("v2a") == 3 and engine.default_cfg("a2v") == 2.0  # folder's meta
    assert engine.dtype == torch.float32 and engine.device.type == "cpu"
    assert isinstance(engine.vocoder, GriffinLim)  # the folder has no neural vocoder
    assert engine.preset == TINY


def test_meta_defaults_per_direction(tmp_path):
    meta = {"steps": {"v2a": 4, "a2v": 6}, "cfg": {"v2a": 5.0}}
    e = Engine.from_folder(str(make_model_folder(tmp_path / "m", meta=meta)), device="cpu")
    assert (e.default_steps("v2a"), e.default_steps("a2v")) == (4, 6)
    assert (e.default_cfg("v2a"), e.default_cfg("a2v")) == (5.0, pipeline.DEFAULT_CFG)
    calls = []
    longform.dub(e, frames(1, TINY.n_frames), callback=lambda done, total: calls.append(total))
    assert calls[-1] == 4


def test_missing_model_is_a_hub_error():
    with pytest.raises(HubError, match="no-such-model"):
        Engine.from_folder("no-such-model", offline=True)


def test_device_and_dtype():
    cpu = resolve_device("cpu")
    assert cpu.type == "cpu" and resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == torch.float16
    with pytest.raises(ValueError):
        resolve_dtype("int8", cpu)
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_clip_seed_depends_on_base_key_and_sample_only():
    s = clip_seed(0, "a.mp4")
    assert s == clip_seed(0, "a.mp4") and 0 <= s < 2**63
    assert len({s, clip_seed(1, "a.mp4"), clip_seed(0, "b.mp4"), clip_seed(0, "a.mp4", 1)}) == 4


def test_outputs_have_the_input_duration(engine):
    wav = longform.dub(engine, frames(2, 13), TWO)  # 13 frames at 8 fps: 1.625 s, under one window
    assert wav.shape == (2, 26_000) and wav.dtype == torch.float32 and wav.abs().max() <= 1
    video = longform.animate(engine, torch.randn(1, 40_000) * 0.1, TWO)  # 2.5 s: two windows
    assert video.shape == (1, 20, 16, 16, 3) and video.dtype == torch.uint8


def test_seed_reproducible_and_samples_differ(engine):
    x = frames(1, 16)
    a, b = longform.dub(engine, x, TWO, seed=3), longform.dub(engine, x, TWO, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, longform.dub(engine, x, TWO, seed=4))
    two = longform.dub(engine, x, TWO, seed=3, samples=2)
    assert two.shape == (1, 2, 32_000) and not torch.equal(two[0, 0], two[0, 1])
    assert_same_clip(two[:, 0], a)  # sample 0 is the single sample
    bell = Sampling(prompt="a metal bell", steps=2)
    assert not torch.equal(a, longform.dub(engine, x, bell, seed=3))


def test_batching_does_not_change_a_clip(engine):
    x = frames(4, 24, seed=1)  # 3 s: two windows each
    seeds = [10, 11, 12, 13]
    together = longform.dub(engine, x, Sampling(steps=2, batch_size=4), seeds=seeds)
    alone = longform.dub(engine, x, Sampling(steps=2, batch_size=1), seeds=seeds)
    single = longform.dub(engine, x[2:3], TWO, seeds=seeds[2:3])
    assert_same_clip(together, alone)
    assert_same_clip(together[2:3], single)


def test_no_host_sync_in_the_sampling_loop(engine, monkeypatch):
    """Inside flow.sample nothing may read a tensor's value on the host (CUDA would sync)."""
    (ng, dg), (nc, dc) = engine.token_shape("a2v")

    def refuse(*a, **k):
        raise AssertionError("host read of a tensor value inside the sampling loop")

    real = flow.sample

    def guarded(*a, **k):
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__"):
                m.setattr(torch.Tensor, name, refuse)
            return real(*a, **k)

    monkeypatch.setattr(flow, "sample", guarded)
    known, mask = torch.randn(2, ng, dg), torch.zeros(2, ng, dtype=torch.bool)
    mask[0, :16] = True
    out = engine.sample(
        "a2v",
        torch.randn(2, nc, dc),
        x0=torch.randn(2, ng, dg),
        cond_noise=torch.randn(2, nc, dc),
        prompts=["a", "b"],
        negative_prompts=["", ""],
        steps=2,
        cfg=3.0,
        sampler="heun",
        known=known,
        known_mask=mask,
    )
    assert torch.equal(out[0, :16], known[0, :16])


def test_cuda_graphs_are_a_no_op_off_cuda(folder):
    v = lambda x, t: x  # noqa: E731
    assert pipeline._graphed(v, torch.zeros(1, 2), torch.zeros(1), warm_up=True) is v
    eng = Engine.from_folder(str(folder), device="cpu", cuda_graphs=True)
    assert eng.cuda_graphs is False
    x = frames(1, 16)
    eager = Engine.from_folder(str(folder))
    assert torch.equal(longform.dub(eng, x, TWO), longform.dub(eager, x, TWO))


# ------------------------------------------------------------------------------------ the CLI


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_dub_and_animate(folder, make_clip, tmp_path):
    clip = make_clip(fps=25, duration=2.6, audio_rate=44_100)
    res = invoke("dub", clip, "-o", tmp_path / "d.mp4", "--model", folder, "--steps", "2")
    assert res.exit_code == 0, res.output
    out, src = media.probe(tmp_path / "d.mp4"), media.probe(clip)
    assert out.has_audio and out.n_frames == src.n_frames
    assert abs(out.audio_duration - src.duration) < 0.03
    sound = make_clip(fps=None, audio_rate=22_050, ext=".wav", duration=2.3)
    res = invoke("animate", sound, "-o", tmp_path / "a.mp4", "--model", folder, "--steps", "2")
    assert res.exit_code == 0, res.output
    out = media.probe(tmp_path / "a.mp4")
    assert out.has_video and out.has_audio and out.n_frames == round(2.3 * 8)
    assert abs(out.duration - 2.3) <= 1 / 8 and (out.height, out.width) == (16, 16)


def test_cli_same_seed_same_file(folder, make_clip, tmp_path):
    clip = make_clip(fps=25, duration=1.2)

    def dub(name: str, seed: int) -> bytes:
        out = tmp_path / name
        res = invoke("dub", clip, "-o", out, "--model", folder, "--seed", seed, "--steps", "2")
        assert res.exit_code == 0, res.output
        return out.read_bytes()

    a, b, c = dub("a.wav", 7), dub("b.wav", 7), dub("c.wav", 8)
    assert a == b and a != c


def test_real_process_animate(folder, make_clip, tmp_path):
    sound = make_clip(fps=None, audio_rate=16_000, ext=".wav", duration=1.5)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "avlink_cli", "animate", str(sound), "-o", str(tmp_path / "x.mp4")]
    res = subprocess.run(
        [*cmd, "--model", str(folder), "--steps", "2"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    info = media.probe(tmp_path / "x.mp4")
    assert info.n_frames == 12 and info.has_audio
    assert np.isfinite(media.read_video(tmp_path / "x.mp4", fps=8, size=(16, 16))).all()
