"""The layers every network here is built from: q/k RMS norm, the standard init, MLP, self- and
cross-attention, a pre-norm transformer layer and a small transformer over a token grid.

The generator (dit.py), the prompt encoder (text.py), the Fusion Blocks (fusion.py), MotionContext
(fusion_motion.py) and the ablation encoders (external.py) import them from here; none of those
imports another for its layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import kernels
from .ops import attention, grid_positions, rope_axes, rope_nd, split_heads


class QKNorm(nn.Module):
    """RMS norm over the head width, computed in float32 (stable under bf16 autocast)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def init_standard(module: nn.Module) -> bool:
    """The init every part starts from: xavier linears with zero bias, unit norms. Returns
    False (and does nothing) for a module built on the meta device to be loaded."""
    if next(module.parameters()).is_meta:
        return False
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, QKNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return True


class Mlp(nn.Module):
    """Linear, GELU, Linear; out_dim defaults to in_dim."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        half = x.dtype in (torch.bfloat16, torch.float16) and x.dtype == self.fc1.weight.dtype
        if x.is_cuda and half and not torch.is_grad_enabled():
            # inference on a GPU in a half dtype (not under autocast, whose weights stay float32):
            # the GELU runs in cuBLASLt's epilogue of the first product (tanh form, as self.act)
            # instead of a second pass over the hidden activations
            h = torch._addmm_activation(
                self.fc1.bias, x.flatten(0, -2), self.fc1.weight.t(), use_gelu=True
            )
            return self.fc2(h.unflatten(0, x.shape[:-1]))
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Fused qkv with per-head RMS norm on q and k; `qkv` is public for joint attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = QKNorm(dim // heads)
        self.k_norm = QKNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def heads_of(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, C) -> q, k, v each (B, H, N, C / H), q and k normalised."""
        q, k, v = (split_heads(z, self.heads) for z in self.qkv(x).chunk(3, dim=-1))
        return self.q_norm(q), self.k_norm(k), v

    def can_fuse(self, x: Tensor, pe: Tensor) -> bool:
        """Whether `rotated_into`'s kernel runs here: GPU inference in a half dtype with Triton
        (kernels.available), a power-of-two head width, one pe for the whole batch."""
        return (
            kernels.available(x)
            and kernels.head_width_ok(self.q_norm.weight.shape[0])
            and pe.dim() == 3
        )

    def rotated_into(self, x: Tensor, pe: Tensor, qk: Tensor, offset: int = 0) -> Tensor:
        """Where `can_fuse`: write x's normalised, rotated q and k into tokens offset .. offset + N
        of qk (2, B, M, H, d) in one kernel (kernels.qk_norm_rope_into), pe rows offset onward
        rotating them; return v (B, N, H, d). Elsewhere use `heads_of` and `apply_rope`."""
        qkv = self.qkv(x)  # (B, N, 3C)
        c = qkv.shape[-1] // 3
        kernels.qk_norm_rope_into(
            qkv, qk, self.q_norm.weight, self.k_norm.weight, pe, offset=offset, eps=self.q_norm.eps
        )
        return qkv[..., 2 * c :].unflatten(-1, (self.heads, -1))

    def forward(self, x: Tensor, pe: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        if pe is not None and self.can_fuse(x, pe):
            b, n, c = x.shape
            qk = x.new_empty(2, b, n, self.heads, c // self.heads)
            v = self.rotated_into(x, pe, qk)
            q, k = qk.transpose(2, 3)  # (B, H, N, d) views of token-major q and k
            return self.proj(attention(q, k, v.transpose(1, 2), mask=mask))
        q, k, v = self.heads_of(x)
        return self.proj(attention(q, k, v, pe=pe, mask=mask))  # (B, N, C)


class CrossAttention(nn.Module):
    """Queries from the stream, keys and values from text tokens (masked where padding)."""

    def __init__(self, dim: int, heads: int, context_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.q_norm = QKNorm(dim // heads)
        self.k_norm = QKNorm(dim // heads)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        q = self.q_norm(split_heads(self.q(x), self.heads))  # (B, H, N, d)
        k, v = (
            split_heads(z, self.heads) for z in self.kv(context).chunk(2, dim=-1)
        )  # (B, H, L, d)
        return self.proj(attention(q, self.k_norm(k), v, mask=mask))  # (B, N, C)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer (self-attention with RoPE, MLP); no time conditioning."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, round(dim * mlp_ratio))

    def forward(self, x: Tensor, pe: Tensor | None, mask: Tensor | None = None) -> Tensor:
        """x (B, N, C), pe (N, d / 2, 2), mask (B, N) bool -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), pe, mask)
        return x + self.mlp(self.norm2(x))


class GridEncoder(nn.Module):
    """A small transformer over a token grid: linear embedding, `EncoderLayer`s with grid RoPE,
    final norm. tokens (B, N, token_dim) -> (B, N, dim). MotionContext and the external-feature
    ablation (external.py) are built from it."""

    def __init__(
        self, *, token_dim: int, dim: int, heads: int, depth: int, grid: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.grid = tuple(grid)
        self.rope_split = rope_axes(dim // heads, len(self.grid))
        self.proj = nn.Linear(token_dim, dim)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        pe = rope_nd(grid_positions(self.grid, device=x.device), self.rope_split)
        h = self.proj(x)  # (B, N, C)
        for layer in self.layers:
            h = layer(h, pe)
        return self.norm(h)
