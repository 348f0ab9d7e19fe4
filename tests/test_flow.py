"""Flow matching on analytic velocity fields: interpolation, loss, times, Euler, Heun, CFG."""

import math

import pytest
import torch

from avlink_cli import flow


def test_interpolation_ends_and_loss() -> None:
    x0, x1 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    assert torch.equal(flow.interpolate(x0, x1, torch.zeros(3)), x0)
    assert torch.equal(flow.interpolate(x0, x1, torch.ones(3)), x1)
    mid = flow.interpolate(x0, x1, torch.tensor([0.25, 0.5, 0.75]))
    assert torch.allclose(mid[1], (x0[1] + x1[1]) / 2)
    assert flow.loss(x1 - x0, x0, x1) == 0
    assert flow.loss(torch.zeros_like(x0), x0, x1) > 0


def test_euler_lands_on_the_straight_path_target() -> None:
    """The field (x1 - x) / (1 - t) moves every point straight to x1, which Euler integrates exactly."""
    target = torch.randn(2, 7)

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (target - x) / (1 - t[:, None])

    for shift in (1.0, 3.0):
        out = flow.sample(v, torch.randn(2, 7), steps=5, shift=shift)
        assert torch.allclose(out, target, atol=1e-5)


def test_heun_beats_euler_on_exponential_growth() -> None:
    """dx/dt = x from x0 gives x0 * e at t = 1."""
    x0 = torch.ones(1, 3)
    exact = x0 * math.e
    err = {
        m: (flow.sample(lambda x, t: x, x0, steps=10, method=m) - exact).abs().max().item()
        for m in ("euler", "heun")
    }
    assert err["heun"] < err["euler"] / 10
    assert (flow.sample(lambda x, t: x, x0, steps=100, method="heun") - exact).abs().max() < 1e-4


def test_constant_velocity_and_callback() -> None:
    seen: list[int] = []
    out = flow.sample(
        lambda x, t: torch.full_like(x, 2.0),
        torch.zeros(2, 3),
        steps=4,
        callback=lambda i, n, x: seen.append(i),
    )
    assert torch.allclose(out, torch.full((2, 3), 2.0))
    assert seen == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        flow.sample(lambda x, t: x, torch.zeros(1), steps=2, method="rk4")


def test_time_grid_and_shift() -> None:
    grid = flow.time_grid(8, shift=3.0)
    assert grid[0] == 0 and grid[-1] == 1 and (grid.diff() > 0).all()
    assert (grid[1:-1] < torch.linspace(0, 1, 9)[1:-1]).all()  # shift > 1 lingers near noise
    assert torch.equal(flow.time_grid(4), torch.linspace(0, 1, 5))


def test_logit_normal_times_are_seeded_and_shifted() -> None:
    a = flow.sample_t(1000, generator=torch.Generator().manual_seed(0))
    b = flow.sample_t(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and ((a > 0) & (a < 1)).all()
    assert abs(a.mean().item() - 0.5) < 0.03
    shifted = flow.sample_t(1000, shift=3.0, generator=torch.Generator().manual_seed(0))
    assert shifted.mean() < a.mean() - 0.1


def test_cfg() -> None:
    vc, vu = torch.tensor([2.0]), torch.tensor([1.0])
    assert (
        flow.cfg(vc, vu, 1.0) == vc and flow.cfg(vc, vu, 0.0) == vu and flow.cfg(vc, vu, 3.0) == 4.0
    )
