"""The generator's output parameterisation (DiTConfig.prediction) and noise shift (t_shift).

A DiT whose tokens are wider than its stream cannot carry the noise a velocity target holds, so
v-prediction stays near its floor; x-prediction learns the clean tokens, which are
low-dimensional. The test trains both on the same small fixed dataset and compares how well each
recovers the clean tokens from a half-noised input.
"""

from __future__ import annotations

import pytest
import torch

from avlink_cli import flow
from avlink_cli.dit import DiT
from avlink_cli.presets import TINY, DiTConfig, Preset
from avlink_cli.text import TextContext

TOKEN_DIM, GRID, WIDTH = 192, (4, 2, 2), 32  # 8x8x3 patches (tiny's video) through 32 wide


def dataset(n: int = 8) -> torch.Tensor:
    """n clips of 16 tokens, each a mix of 3 fixed 192-value patterns (low rank), per-value std
    about 0.4 (real video tokens: 0.47)."""
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(3, TOKEN_DIM, generator=g) / 3**0.5
    coef = torch.randn(n, 16, 3, generator=g)
    return 0.4 * coef @ basis  # (n, 16, 192)


def null_ctx(batch: int) -> TextContext:
    return TextContext(torch.zeros(batch, 1, WIDTH), torch.ones(batch, 1, dtype=torch.bool))


def x_hat(dit: DiT, x_t: torch.Tensor, t: float) -> torch.Tensor:
    """The clean tokens that the predicted velocity implies: x_t + (1 - t) v."""
    return x_t + (1 - t) * dit(x_t, t, null_ctx(x_t.shape[0]))


def fit(prediction: str, data: torch.Tensor, steps: int = 300) -> DiT:
    torch.manual_seed(0)
    dit = DiT(
        DiTConfig(width=WIDTH, depth=2, heads=2, prediction=prediction),
        token_dim=TOKEN_DIM,
        grid=GRID,
        context_dim=WIDTH,
    )
    opt = torch.optim.AdamW(dit.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        t = torch.sigmoid(torch.randn(len(data), generator=g))
        x0 = torch.randn(data.shape, generator=g)
        loss = flow.loss(dit(flow.interpolate(x0, data, t), t, null_ctx(len(data))), x0, data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return dit.eval()


@torch.no_grad()
def recovery_error(dit: DiT, data: torch.Tensor, t: float = 0.5) -> float:
    """Mean squared error of x_hat at flow time t over the training clips, fixed noise."""
    x0 = torch.randn(data.shape, generator=torch.Generator().manual_seed(2))
    x_t = flow.interpolate(x0, data, torch.full((len(data),), t))
    return float((x_hat(dit, x_t, t) - data).square().mean())


@pytest.mark.slow
def test_x_prediction_fits_where_v_prediction_hits_the_bottleneck():
    data = dataset()
    # predicting the data's mean has an error of about 0.16; v-prediction's floor at t = 0.5 is
    # about (1 - t)^2 (192 - 32) / 192 = 0.21, the noise its 32-wide stream cannot carry
    mean_err = float((data - data.mean(0)).square().mean())
    v_err = recovery_error(fit("v", data), data)
    x_err = recovery_error(fit("x", data), data)
    assert v_err > mean_err, (v_err, mean_err)  # v-prediction: worse than guessing the mean
    assert x_err < 0.2 * mean_err, (x_err, mean_err)  # x-prediction: learns the clips
    assert x_err < 0.1 * v_err


def test_x_prediction_velocity_is_the_straight_path_to_its_output():
    torch.manual_seed(0)
    dit = DiT(
        DiTConfig(width=WIDTH, depth=1, heads=2, prediction="x"),
        token_dim=TOKEN_DIM,
        grid=GRID,
        context_dim=WIDTH,
    )
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, ctx = torch.randn(2, 16, TOKEN_DIM), null_ctx(2)
    for t in (0.0, 0.3, 0.99):
        head = dit.head(*_stream(dit, x, t, ctx))
        v = dit(x, t, ctx)
        gap = max(1 - t, 0.05)
        torch.testing.assert_close(v, (head - x) / gap)


def _stream(dit: DiT, x: torch.Tensor, t: float, ctx: TextContext):
    tt = torch.full((x.shape[0],), t)
    h, c = dit.embed(x, tt)
    pe = dit.rope()
    for block in dit.blocks:
        h = block(h, c, pe, ctx)
    return h, c


def test_folders_without_the_fields_read_as_v_prediction_unshifted():
    d = TINY.to_dict()
    for key in ("video_dit", "audio_dit"):
        d[key] = {
            k: v for k, v in d[key].items() if k not in ("prediction", "t_shift", "sample_shift")
        }
    p = Preset.from_dict(d)
    assert (p.video_dit.prediction, p.video_dit.t_shift) == ("v", 1.0)
    assert p.video_dit.sampling_shift == 1.0  # samples on its training grid
    with pytest.raises(ValueError, match="prediction"):
        DiTConfig(width=8, depth=1, heads=1, prediction="eps")
    with pytest.raises(ValueError, match="sample_shift"):
        DiTConfig(width=8, depth=1, heads=1, sample_shift=0.0)
    cfg = DiTConfig(width=8, depth=1, heads=1, t_shift=6.0, sample_shift=1.5)
    assert (cfg.t_shift, cfg.sampling_shift) == (6.0, 1.5)


def test_the_engine_samples_on_the_sampling_shift():
    from dataclasses import replace

    from avlink_cli.avlink import AVLink
    from avlink_cli.pipeline import Engine

    video = replace(TINY.video_dit, t_shift=6.0, sample_shift=1.5)
    engine = Engine(AVLink(replace(TINY, video_dit=video)))
    assert engine.default_shift("a2v") == 1.5  # the video DiT's sampling grid, not training's
    assert engine.default_shift("v2a") == TINY.audio_dit.sampling_shift
    engine.meta["shift"] = {"a2v": 3.0}  # a model folder's meta still overrides it
    assert engine.default_shift("a2v") == 3.0
