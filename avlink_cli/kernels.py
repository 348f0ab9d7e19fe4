"""Hand-written GPU kernels for the inference hot path, used only where Triton is installed, on a
CUDA device, without autograd; everything else runs the plain PyTorch code in ops.py / dit.py,
which defines what these compute.

`qk_norm_rope`: the q/k RMS norm and RoPE of an attention layer in one pass over the fused qkv
projection. Compiled, PyTorch writes this as a persistent reduction that ran at a fraction of
memory bandwidth on an H200 (docs/performance.md, experiments/qk_probe.py); one program
here normalises and rotates a block of (token, head) rows of q and of k and writes them
token-major, (B, N, H, d), the layout the attention kernels read.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # Triton ships with CUDA builds of PyTorch; CPU builds lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None


def available(x: Tensor) -> bool:
    """Whether the fused kernels can run on x: Triton present, CUDA, half dtype, no autograd."""
    return (
        triton is not None
        and x.is_cuda
        and x.dtype in (torch.bfloat16, torch.float16)
        and not torch.is_grad_enabled()
    )


if triton is not None:

    @triton.jit
    def _qk_norm_rope_kernel(
        src_ptr,  # (B, N, >= 2 * width) rows: q at column 0, k at column `width`
        out_ptr,  # (2, B, M, H, D): q then k, token-major, M >= offset + N tokens a sample
        wq_ptr,  # (D,) float32 RMS norm weights of q and of k
        wk_ptr,
        pe_ptr,  # (P, D / 2, 2) float32 (cos, sin) per position, contiguous
        rows,  # B * N * H
        heads,
        n_tokens,  # N
        out_tokens,  # M
        offset,  # first output token and first position of this call
        src_row_stride,
        width,  # H * D
        eps,
        D: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        r = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,) = (token, head) rows
        live = r < rows
        tok = r // heads
        head = r % heads
        b = tok // n_tokens
        n = tok % n_tokens
        cols = tl.arange(0, D)
        half = tl.arange(0, D // 2)
        pos = (offset + n)[:, None] * D + 2 * half[None, :]  # (BLOCK, D / 2)
        cos = tl.load(pe_ptr + pos, mask=live[:, None], other=0.0)
        sin = tl.load(pe_ptr + pos + 1, mask=live[:, None], other=0.0)
        src = src_ptr + tok.to(tl.int64)[:, None] * src_row_stride + head[:, None] * D + cols
        dst_row = (b.to(tl.int64) * out_tokens + offset + n) * heads + head  # (BLOCK,)
        dst = out_ptr + dst_row[:, None] * D + cols[None, :]
        plane = rows // n_tokens * out_tokens  # elements of q before k, over D
        for part in tl.static_range(2):
            if part == 0:
                w = tl.load(wq_ptr + cols).to(tl.float32)
            else:
                w = tl.load(wk_ptr + cols).to(tl.float32)
            x = tl.load(src + part * width, mask=live[:, None], other=0.0)
            xf = x.to(tl.float32)
            inv = tl.rsqrt(tl.sum(xf * xf, axis=1) / D + eps)  # (BLOCK,)
            y = (xf * inv[:, None] * w[None, :]).to(x.dtype).to(tl.float32)  # as QKNorm rounds
            y0, y1 = tl.split(tl.reshape(y, (BLOCK, D // 2, 2)))
            out = tl.reshape(tl.join(y0 * cos - y1 * sin, y0 * sin + y1 * cos), (BLOCK, D))
            tl.store(dst + part * plane.to(tl.int64) * D, out.to(x.dtype), mask=live[:, None])

    @torch.library.triton_op("avlink::qk_norm_rope_into", mutates_args={"out"})
    def _qk_norm_rope_into(
        src: Tensor,
        out: Tensor,
        wq: Tensor,
        wk: Tensor,
        pe: Tensor,
        heads: int,
        offset: int,
        eps: float,
        block: int,
    ) -> None:
        b, n, _ = src.shape
        d = out.shape[-1]
        rows = b * n * heads
        torch.library.wrap_triton(_qk_norm_rope_kernel)[(triton.cdiv(rows, block),)](
            src, out, wq, wk, pe, rows, heads, n, out.shape[2], offset,
            src.stride(1), heads * d, eps, D=d, BLOCK=block,
        )  # fmt: skip


def head_width_ok(d: int) -> bool:
    """qk_norm_rope's head width: a power of two (Triton's blocks are)."""
    return d >= 2 and not d & (d - 1)


def qk_norm_rope_into(
    src: Tensor,
    out: Tensor,
    wq: Tensor,
    wk: Tensor,
    pe: Tensor,
    *,
    offset: int,
    eps: float,
    block: int = 64,
) -> None:
    """Normalise and rotate the q and k of src (B, N, >= 2 * H * d; q in the first H * d columns,
    k in the next, each token's row contiguous) into out (2, B, M, H, d) at tokens offset ..
    offset + N, rotated by pe rows offset .. offset + N (P, d / 2, 2). block: (token, head) rows
    a program."""
    b, n, _ = src.shape
    heads, d = out.shape[-2:]
    if not head_width_ok(d) or src.stride(-1) != 1 or src.stride(0) != n * src.stride(1):
        raise ValueError("qk_norm_rope needs a power-of-two head width and (B, N) rows in order")
    if not out.is_contiguous() or out.shape[:2] != (2, b) or out.shape[2] < offset + n:
        raise ValueError(
            f"qk_norm_rope: output {tuple(out.shape)} cannot take {n} tokens at {offset}"
        )
    if pe.shape[0] < offset + n or 2 * pe.shape[1] != d:
        raise ValueError(f"qk_norm_rope: RoPE table {tuple(pe.shape)} too short or not {d} wide")
    _qk_norm_rope_into(
        src, out, wq.float(), wk.float(), pe.float().contiguous(), heads, offset, eps, block
    )
