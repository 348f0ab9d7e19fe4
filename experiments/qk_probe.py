"""How fast is the q/k RMS norm + RoPE of one attention layer, compiled, in each way of writing it?

On the `paper` preset's video self-attention (batch 16, 4320 tokens, 16 heads of 64, 3D RoPE) and
its Fusion joint attention (4445 tokens, 10 heads), bf16: times the compiled norm + RoPE of q and
k read from the fused qkv projection, written several ways, against a copy of the same bytes (the
floor), and the whole attention sublayer (qkv, norm + RoPE, SDPA, projection) with each. Also
times SDPA alone with v strided (a third of qkv) and contiguous, to see whether the attention
kernel copies it. Run with TORCH_LOGS=output_code to see the kernels inductor writes.

    python experiments/qk_probe.py [--reps 50] [--shrink 1]
"""

from __future__ import annotations

import argparse
import functools
import math

import torch
import torch.nn.functional as F

from avlink_cli import kernels
from avlink_cli.bench import median_ms
from avlink_cli.layers import SelfAttention
from avlink_cli.ops import apply_rope, grid_positions, rope_axes, rope_nd, split_heads


def current(attn: SelfAttention, qkv: torch.Tensor, pe: torch.Tensor):
    q, k, v = (split_heads(z, attn.heads) for z in qkv.chunk(3, dim=-1))
    return apply_rope(attn.q_norm(q), pe), apply_rope(attn.k_norm(k), pe), v


def joint(attn: SelfAttention, qkv: torch.Tensor, pe: torch.Tensor, *, swap: bool = False):
    """q and k in one pass: (B, N, 2, H, d) normed with stacked weights, rotated, written once."""
    b, n, c3 = qkv.shape
    c = c3 // 3
    h = attn.heads
    d = c // h
    x = qkv[..., : 2 * c].unflatten(-1, (2, h, d)).float()  # (B, N, 2, H, d)
    w = torch.stack([attn.q_norm.weight, attn.k_norm.weight]).float()[:, None]  # (2, 1, d)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + attn.q_norm.eps) * w
    x = x.to(qkv.dtype).float()
    cos, sin = pe[:, None, None, :, 0], pe[:, None, None, :, 1]  # (N, 1, 1, d / 2)
    if swap:
        cos2 = cos.repeat_interleave(2, -1)
        sin2 = torch.stack([-sin, sin], -1).flatten(-2)
        xs = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
        out = x * cos2 + xs * sin2
    else:
        x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
        out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)
    out = out.to(qkv.dtype)  # (B, N, 2, H, d)
    v = qkv[..., 2 * c :].unflatten(-1, (h, d))
    return out[:, :, 0].transpose(1, 2), out[:, :, 1].transpose(1, 2), v.transpose(1, 2)


def fused(attn: SelfAttention, qkv: torch.Tensor, pe: torch.Tensor, *, block: int = 64):
    """The Triton kernel the model uses on a GPU (avlink_cli/kernels.py)."""
    b, n, c3 = qkv.shape
    c = c3 // 3
    qk = qkv.new_empty(2, b, n, attn.heads, c // attn.heads)
    kernels.qk_norm_rope_into(
        qkv,
        qk,
        attn.q_norm.weight,
        attn.k_norm.weight,
        pe,
        offset=0,
        eps=attn.q_norm.eps,
        block=block,
    )
    v = qkv[..., 2 * c :].unflatten(-1, (attn.heads, -1))
    return qk[0].transpose(1, 2), qk[1].transpose(1, 2), v.transpose(1, 2)


def floor(attn: SelfAttention, qkv: torch.Tensor, pe: torch.Tensor):
    c = qkv.shape[-1] // 3
    return (qkv[..., : 2 * c] * 2,)


WAYS = {
    "current": current,
    "joint": joint,
    "joint-swap": lambda a, x, p: joint(a, x, p, swap=True),
    "floor (copy)": floor,
}
if kernels.triton is not None:
    for rows in (16, 32, 64, 128):
        WAYS[f"triton kernel, {rows} rows"] = functools.partial(fused, block=rows)


def model_check(folder: str, dev: str) -> None:
    """Sample both directions with a trained model (whose adaLN gates are not zero, so attention
    counts) with the fused kernels and without them, from the same noise; print the difference."""
    from avlink_cli.checkpoint import load_model
    from avlink_cli.pipeline import Engine

    loaded = load_model(folder, device=dev, dtype=torch.bfloat16)
    engine = Engine(loaded.model, device=torch.device(dev), dtype=torch.bfloat16)
    real = kernels.available
    for direction in ("v2a", "a2v"):
        (n_gen, d_gen), (n_cnd, d_cnd) = engine.token_shape(direction)
        g = torch.Generator().manual_seed(0)
        b = 4
        inputs = dict(
            cond=torch.randn(b, n_cnd, d_cnd, generator=g),
            x0=torch.randn(b, n_gen, d_gen, generator=g),
            cond_noise=torch.randn(b, n_cnd, d_cnd, generator=g),
            prompts=["a ball bounces"] * b,
            negative_prompts=[""] * b,
        )
        outs = []
        for on in (True, False):
            kernels.available = real if on else (lambda x: False)
            outs.append(engine.sample(direction, **inputs))
        kernels.available = real
        a, r = outs
        rel = ((a - r).norm() / r.norm()).item()
        print(
            f"{folder} {direction}: fused kernels vs plain PyTorch, relative difference {rel:.2e}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--model", help="also compare sampling with and without the kernels")
    ap.add_argument("--shrink", type=int, default=1, help="divide batch and tokens (a CPU dry run)")
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    s = args.shrink
    shapes = [  # name, batch, width, heads, grid of RoPE positions
        ("video self-attention", 16 // s, 1024, 16, (30 // s, 9, 16)),
        ("fusion joint", 16 // s, 640, 10, (4445 // s,)),
    ]
    for knob in ("recompile_limit", "cache_size_limit"):  # each way recompiles `sublayer`
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 64)
    torch.manual_seed(0)
    if args.model:
        model_check(args.model, dev)
    for shape in shapes:
        probe(*shape, dev=dev, reps=args.reps)


def probe(name: str, b: int, width: int, heads: int, grid: tuple, *, dev: str, reps: int) -> None:
    """One attention shape: each way's time, bandwidth, error, and its whole sublayer's time."""
    dt = torch.bfloat16
    attn = SelfAttention(width, heads).to(dev, dt).eval()
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    n = math.prod(grid)
    pe = rope_nd(grid_positions(grid, device=dev), rope_axes(width // heads, len(grid)))
    x = torch.randn(b, n, width, device=dev, dtype=dt)
    qkv = attn.qkv(x).detach()
    nbytes = 2 * (2 * qkv.numel() // 3) * qkv.element_size()  # q, k read once, written once
    ref = None
    print(f"\n## {name}: batch {b}, {n} tokens, {heads} heads; q+k bytes {nbytes / 1e6:.0f} MB")
    print("| way | ms | GB/s | max error vs current | whole sublayer ms |\n|---|---|---|---|---|")
    with torch.no_grad():
        for way, fn in WAYS.items():
            f = torch.compile(functools.partial(fn, attn, qkv, pe), fullgraph=True)
            outs = f()
            ms = median_ms(f, reps)
            ref = outs if ref is None else ref
            err = float("nan")
            if len(outs) == 3:
                err = max(
                    (o.float() - r.float()).abs().max().item()
                    for o, r in zip(outs, ref, strict=True)
                )
            whole = float("nan")
            if len(outs) == 3:
                g = torch.compile(functools.partial(sublayer, fn, attn, x, pe), fullgraph=True)
                whole = median_ms(g, reps)
            print(f"| {way} | {ms:.3f} | {nbytes / ms / 1e6:.0f} | {err:.2e} | {whole:.3f} |")
        q, k, v = current(attn, qkv, pe)
        for label, vv in (("v strided", v), ("v contiguous", v.contiguous())):
            ms = median_ms(functools.partial(F.scaled_dot_product_attention, q, k, vv), reps)
            print(f"SDPA alone, q/k token-major, {label}: {ms:.3f} ms")
        qc, kc, vc = q.contiguous(), k.contiguous(), v.contiguous()
        ms = median_ms(functools.partial(F.scaled_dot_product_attention, qc, kc, vc), reps)
        print(f"SDPA alone, q/k/v head-major contiguous: {ms:.3f} ms")


def sublayer(fn, attn: SelfAttention, x: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """qkv projection, norm + RoPE written as fn, SDPA, output projection."""
    q, k, v = fn(attn, attn.qkv(x), pe)
    o = F.scaled_dot_product_attention(q, k, v)
    return attn.proj(o.transpose(1, 2).flatten(2))


if __name__ == "__main__":
    main()
