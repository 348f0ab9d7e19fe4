"""Pure tensor math shared by every network: attention, RoPE, adaLN modulation, time embedding.

Shapes: B batch, H heads, N tokens, d head width, A RoPE axes. Flow time t runs from 0 (noise)
to 1 (data); the time embedding sees t * 1000 so the sinusoid frequencies cover the range.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def attention(
    q: Tensor, k: Tensor, v: Tensor, *, pe: Tensor | None = None, mask: Tensor | None = None
) -> Tensor:
    """Multi-head attention. q (B, H, N, d), k/v (B, H, M, d), pe from `rope`, mask (B, M) bool
    (True = attend) -> (B, N, H * d)."""
    if pe is not None:
        q, k = apply_rope(q, pe), apply_rope(k, pe)
    if mask is not None:
        mask = mask[:, None, None, :]  # (B, 1, 1, M)
    x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, N, d)
    return x.transpose(1, 2).flatten(2)  # (B, N, H * d)


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, N, H * d) -> (B, H, N, d)."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2)


def rope(pos: Tensor, dim: int, *, theta: float = 10_000.0) -> Tensor:
    """Rotary angles for float positions. pos (..., N) -> (..., N, dim / 2, 2) as (cos, sin).

    Angles are computed in float64 and rounded once, so equal positions give bit-identical
    rotations whatever path computed them (an audio token and a video token at the same second).
    """
    if dim % 2:
        raise ValueError(f"RoPE width must be even, got {dim}")
    device = pos.device
    f64 = device.type not in ("mps",)  # MPS has no float64
    dt = torch.float64 if f64 else torch.float32
    omega = theta ** -(torch.arange(0, dim, 2, dtype=dt, device=device) / dim)  # (dim / 2,)
    angle = pos.to(dt)[..., None] * omega  # (..., N, dim / 2)
    return torch.stack([angle.cos(), angle.sin()], dim=-1).float()  # (..., N, dim / 2, 2)


def rope_nd(pos: Tensor, axes_dim: tuple[int, ...], *, theta: float = 10_000.0) -> Tensor:
    """Multi-axis RoPE: axis a rotates its own axes_dim[a] channels of the head.

    pos (..., N, A) -> (..., N, sum(axes_dim) / 2, 2).
    """
    if pos.shape[-1] != len(axes_dim):
        raise ValueError(f"positions have {pos.shape[-1]} axes, RoPE split has {len(axes_dim)}")
    return torch.cat([rope(pos[..., a], d, theta=theta) for a, d in enumerate(axes_dim)], dim=-2)


def apply_rope(x: Tensor, pe: Tensor) -> Tensor:
    """Rotate channel pairs (2i, 2i + 1) of x (B, H, N, d) by pe (N | B N | B 1 N, d / 2, 2).

    Computed in token-major order (B, N, H, d) and returned as a (B, H, N, d) view of it: that is
    the order the fused projections write heads in and the order attention kernels read, so a
    compiled graph writes whole rows instead of transposing (the values are the same either way).
    """
    if pe.dim() == 3:
        pe = pe[None, :, None]  # (1, N, 1, d / 2, 2)
    elif pe.dim() == 4:
        pe = pe[:, :, None]  # (B, N, 1, d / 2, 2)
    else:
        pe = pe.transpose(1, 2)  # (B, N, 1, d / 2, 2)
    xf = x.transpose(1, 2).float().unflatten(-1, (-1, 2))  # (B, N, H, d / 2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    cos, sin = pe[..., 0], pe[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (B, N, H, d / 2, 2)
    return out.flatten(-2).type_as(x).transpose(1, 2)


def rope_axes(head_dim: int, n_axes: int) -> tuple[int, ...]:
    """Split an even head width over RoPE axes: equal even shares, the remainder to axis 0 (time).

    rope_axes(64, 3) == (24, 20, 20); rope_axes(64, 1) == (64,).
    """
    if head_dim % 2:
        raise ValueError(f"head width must be even for RoPE, got {head_dim}")
    share = 2 * (head_dim // (2 * n_axes))
    if share == 0:
        raise ValueError(f"head width {head_dim} is too small for {n_axes} RoPE axes")
    return (head_dim - share * (n_axes - 1),) + (share,) * (n_axes - 1)


def grid_positions(grid: tuple[int, ...], *, device: torch.device | str | None = None) -> Tensor:
    """Integer positions of a row-major grid: grid (G0, G1, ...) -> (prod(grid), len(grid)) float."""
    axes = [torch.arange(g, dtype=torch.float32, device=device) for g in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.flatten() for m in mesh], dim=-1)  # (N, A)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, N, C), shift/scale (B, C) -> x * (1 + scale) + shift."""
    return x * (1 + scale[:, None]) + shift[:, None]


def timestep_embedding(
    t: Tensor, dim: int, *, max_period: float = 10_000.0, time_factor: float = 1000.0
) -> Tensor:
    """Sinusoidal embedding of flow times t (B,) in [0, 1] -> (B, dim) float32."""
    t = time_factor * t.float()
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def as_time(t: Tensor | float, batch: int, *, device: torch.device | str | None = None) -> Tensor:
    """A flow time given as a float, a 0-d or a (B,) tensor -> (B,) float32."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"flow time must be a scalar or shape ({batch},), got {tuple(t.shape)}")
    return t
