"""Flow matching: interpolation, loss, training times, Euler and Heun samplers, CFG.

Time convention: t = 0 is noise x0 ~ N(0, I), t = 1 is data x1; x_t = t * x1 + (1 - t) * x0 and
the velocity to learn is x1 - x0. Samplers integrate dx/dt = v(x, t) from 0 to 1 and know
nothing of the network: `v` is any callable (x (B, ...), t (B,)) -> (B, ...).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]
StepCallback = Callable[[int, int, Tensor], None]  # (step done, total steps, x)


def _bcast(t: Tensor, x: Tensor) -> Tensor:
    """t (B,) -> (B, 1, ...) to broadcast over x."""
    return t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))


def interpolate(x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """x_t = t * x1 + (1 - t) * x0, with t (B,)."""
    tb = _bcast(t, x1)
    return tb * x1 + (1 - tb) * x0


def target_velocity(x0: Tensor, x1: Tensor) -> Tensor:
    return x1 - x0


def loss(v_pred: Tensor, x0: Tensor, x1: Tensor) -> Tensor:
    """Mean squared error against the straight-path velocity (a scalar)."""
    return (v_pred.float() - target_velocity(x0, x1).float()).square().mean()


def shift_time(t: Tensor, shift: float) -> Tensor:
    """Resolution shift of the noise level sigma = 1 - t: sigma' = s*sigma / (1 + (s - 1)*sigma).

    shift > 1 spends more time near noise; shift 1 is the identity.
    """
    sigma = 1 - t
    return 1 - shift * sigma / (1 + (shift - 1) * sigma)


def sample_t(
    batch: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Training times (B,) from a logit-normal (sigmoid of N(mean, std)), then `shift_time`."""
    gen_device = generator.device if generator is not None else device
    z = torch.randn(batch, generator=generator, device=gen_device) * std + mean
    return shift_time(torch.sigmoid(z), shift).to(device)


def time_grid(
    steps: int, *, shift: float = 1.0, device: torch.device | str | None = None
) -> Tensor:
    """steps + 1 times from 0 to 1 (uniform, then shifted), float32."""
    if steps < 1:
        raise ValueError(f"need at least one sampling step, got {steps}")
    return shift_time(torch.linspace(0, 1, steps + 1, device=device), shift)


def cfg(v_cond: Tensor, v_uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: v_u + scale * (v_c - v_u); scale 1 is the conditional."""
    return v_uncond + scale * (v_cond - v_uncond)


def sample(
    v: VelocityFn,
    x0: Tensor,
    *,
    steps: int,
    method: str = "euler",
    shift: float = 1.0,
    callback: StepCallback | None = None,
) -> Tensor:
    """Integrate from noise x0 at t = 0 to data at t = 1 with `steps` Euler or Heun steps.

    Heun costs two velocity calls a step (the last step too: v is well defined at t = 1).
    """
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown sampler {method!r}; use 'euler' or 'heun'")
    ts = time_grid(steps, shift=shift, device=x0.device)
    x, batch = x0, x0.shape[0]
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        dt = t_next - t
        d = v(x, t.expand(batch))
        if method == "heun":
            d_next = v(x + dt * d, t_next.expand(batch))
            d = (d + d_next) / 2
        x = x + dt * d
        if callback is not None:
            callback(i + 1, steps, x)
    return x
