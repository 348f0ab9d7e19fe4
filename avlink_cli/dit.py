"""The generator backbone: a DiT of adaLN-Zero blocks (self-attention with RoPE, cross-attention
to text tokens, MLP), shared by audio (1D RoPE over token index) and video (3D RoPE over
(frame group, row, column)).

The box is open: `embed`, `blocks` and `head` are public so AV-Link can run two backbones block
by block with Fusion Blocks between them; `forward` is exactly that loop with nothing between.
Flow time t: 0 is noise, 1 is data. The head predicts the velocity x1 - x0 or the clean tokens
x1 (DiTConfig.prediction); `velocity_of` turns either into the velocity, which is what the loss
and the samplers see.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .layers import CrossAttention, Mlp, SelfAttention, init_standard
from .ops import as_time, grid_positions, modulate, rope_axes, rope_nd, timestep_embedding
from .presets import DiTConfig

if TYPE_CHECKING:
    from .text import TextContext

X_PRED_MIN_GAP = 0.05  # x-prediction's velocity divides by max(1 - t, this)


class TimestepEmbedder(nn.Module):
    """Flow time t (B,) -> conditioning vector c (B, C)."""

    def __init__(self, dim: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class Embed(nn.Module):
    """Tokens (B, N, token_dim) and flow time (B,) -> stream (B, N, C) and condition c (B, C)."""

    def __init__(self, token_dim: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(token_dim, dim)
        self.time = TimestepEmbedder(dim)

    def forward(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.proj(x), self.time(t)


class DiTBlock(nn.Module):
    """adaLN-Zero block: modulated self-attention, cross-attention to text, modulated MLP."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, pe: Tensor, ctx: TextContext) -> Tensor:
        """x (B, N, C), c (B, C), pe from `DiT.rope`, ctx tokens (B, L, C_text) -> (B, N, C)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=-1)  # (B, C) each
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1), pe)
        x = x + self.cross(self.norm2(x), ctx.tokens, ctx.mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm3(x), shift2, scale2))


class Head(nn.Module):
    """Final modulated norm and projection back to token space."""

    def __init__(self, dim: int, token_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.proj = nn.Linear(dim, token_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=-1)
        return self.proj(modulate(self.norm(x), shift, scale))  # (B, N, token_dim)


class DiT(nn.Module):
    """One flow-matching generator over a fixed token grid.

    grid: (N,) for audio (1D RoPE over token index) or (T, H, W) for video (3D RoPE, tokens in
    row-major (t, h, w) order). `forward(x, t, ctx)`: x (B, N, token_dim), t (B,) -> velocity.
    """

    def __init__(
        self,
        cfg: DiTConfig,
        *,
        token_dim: int,
        grid: tuple[int, ...],
        context_dim: int,
        rope_theta: float = 10_000.0,
    ) -> None:
        super().__init__()
        self.cfg, self.token_dim, self.grid, self.rope_theta = (
            cfg,
            token_dim,
            tuple(grid),
            rope_theta,
        )
        self.rope_split = rope_axes(cfg.width // cfg.heads, len(self.grid))
        self.embed = Embed(token_dim, cfg.width)
        self.blocks = nn.ModuleList(
            DiTBlock(cfg.width, cfg.heads, mlp_ratio=cfg.mlp_ratio, context_dim=context_dim)
            for _ in range(cfg.depth)
        )
        self.head = Head(cfg.width, token_dim)
        self.init_weights()

    @property
    def n_tokens(self) -> int:
        return math.prod(self.grid)

    def init_weights(self) -> None:
        """DiT init: xavier linears, small time MLP, and zeros on every adaLN, the cross-attention
        output and the head, so a fresh DiT outputs zero."""
        if not init_standard(self):
            return
        for lin in (self.embed.time.mlp[0], self.embed.time.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        for block in self.blocks:
            for zero in (block.adaLN[-1], block.cross.proj):
                nn.init.zeros_(zero.weight)
                nn.init.zeros_(zero.bias)
        for zero in (self.head.adaLN[-1], self.head.proj):
            nn.init.zeros_(zero.weight)
            nn.init.zeros_(zero.bias)

    def rope(self, *, device: torch.device | str | None = None) -> Tensor:
        """RoPE table over the grid's integer positions -> (N, head_dim / 2, 2)."""
        return rope_nd(
            grid_positions(self.grid, device=device), self.rope_split, theta=self.rope_theta
        )

    def check_tokens(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1:] != (self.n_tokens, self.token_dim):
            raise ValueError(
                f"expected tokens (B, {self.n_tokens}, {self.token_dim}), got {tuple(x.shape)}"
            )

    def velocity_of(self, out: Tensor, x: Tensor, t: Tensor) -> Tensor:
        """The head's output (B, N, token_dim) for tokens x at flow times t (B,) -> velocity.

        prediction "v": the output is the velocity. "x": the output is the clean tokens x1, and
        v = (x1 - x_t) / (1 - t), with 1 - t held at 0.05 or more (the straight path's velocity,
        bounded where t nears 1)."""
        if self.cfg.prediction == "v":
            return out.to(x.dtype)
        left = (1 - t.float()).clamp(min=X_PRED_MIN_GAP).view(-1, *([1] * (x.dim() - 1)))
        return ((out.float() - x.float()) / left).to(x.dtype)

    def forward(self, x: Tensor, t: Tensor | float, ctx: TextContext) -> Tensor:
        """x (B, N, token_dim) at flow time t -> predicted velocity (B, N, token_dim)."""
        self.check_tokens(x)
        t = as_time(t, x.shape[0], device=x.device)
        h, c = self.embed(x.to(self.embed.proj.weight.dtype), t)
        pe = self.rope(device=x.device)
        for block in self.blocks:
            h = block(h, c, pe, ctx)  # (B, N, C)
        return self.velocity_of(self.head(h, c), x, t)
