"""Which attention kernel is fastest for the `paper` preset's shapes on this GPU, and is it right?

Times scaled_dot_product_attention restricted to one backend at a time (flash, cuDNN,
memory-efficient) on the shapes one sampling step runs, in bf16, with the layouts the model gives
it (q and k contiguous after RoPE, v a strided third of the fused qkv projection), and compares each
output with the math backend in float32 on the first sample. A backend that cannot take a shape says
why (PyTorch's own warning). One JSON line per (shape, backend), then a table.

    python experiments/attn_probe.py [--json FILE] [--reps 20]
"""

from __future__ import annotations

import argparse
import functools
import json
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from avlink_cli.bench import median_ms

# (name, batch, heads, queries, keys, head width, text mask): V2A at batch 16 (A2V doubles the
# video rows with CFG); 4320 video tokens, 4445 audio + video tokens in a Fusion Block, 48 text keys
SHAPES = [
    ("video self-attention", 16, 16, 4320, 4320, 64, False),
    ("fusion joint attention", 16, 10, 4445, 4445, 64, False),
    ("video cross-attention (text)", 16, 16, 4320, 48, 64, True),
    ("audio self-attention, CFG rows", 32, 16, 125, 125, 64, False),
]
BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}


def inputs(b: int, h: int, n: int, m: int, d: int, masked: bool, gen: torch.Generator):
    """q, k contiguous (B, H, N, d); v a view into a (B, M, 3 * H * d) projection, as in the model."""
    dev, dt = gen.device, torch.bfloat16
    q = torch.randn(b, h, n, d, device=dev, dtype=dt, generator=gen)
    k = torch.randn(b, h, m, d, device=dev, dtype=dt, generator=gen)
    qkv = torch.randn(b, m, 3 * h * d, device=dev, dtype=dt, generator=gen)
    v = qkv[..., 2 * h * d :].view(b, m, h, d).transpose(1, 2)  # (B, H, M, d), strided
    mask = None
    if masked:  # a prompt of 5 to m tokens per sample, True = attend
        lengths = torch.randint(5, m + 1, (b,), device=dev, generator=gen)
        mask = (torch.arange(m, device=dev)[None] < lengths[:, None])[:, None, None, :]
    return q, k, v, mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the JSON lines here")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--shrink", type=int, default=1, help="divide batch and tokens (a CPU dry run)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else "cpu (dry run)"
    cudnn = torch.backends.cudnn.version()
    print(f"# {device}, torch {torch.__version__}, cuDNN {cudnn}", flush=True)
    rows = []
    gen = torch.Generator("cuda" if cuda else "cpu").manual_seed(0)
    for name, b, h, n, m, d, masked in SHAPES:
        b, n, m = max(1, b // args.shrink), max(8, n // args.shrink), max(8, m // args.shrink)
        out = None
        q, k, v, mask = inputs(b, h, n, m, d, masked, gen)
        with sdpa_kernel([SDPBackend.MATH]):
            ref = F.scaled_dot_product_attention(
                q[:1].float(),
                k[:1].float(),
                v[:1].float(),
                attn_mask=None if mask is None else mask[:1],
            )
        flop = 4 * b * h * n * m * d
        call = functools.partial(F.scaled_dot_product_attention, q, k, v, attn_mask=mask)
        for label, backend in BACKENDS.items():
            row = {"shape": name, "backend": label, "b": b, "h": h, "n": n, "m": m, "d": d}
            with warnings.catch_warnings(record=True) as caught, sdpa_kernel([backend]):
                warnings.simplefilter("always")
                try:
                    out = call()
                    err = ((out[:1].float() - ref).norm() / ref.norm()).item()
                    ms = median_ms(call, args.reps)
                    row |= {"ms": ms, "tflops": flop / ms / 1e9, "rel_err": err}
                except RuntimeError as e:
                    why = " | ".join(str(w.message) for w in caught) or str(e)
                    row |= {"error": why[:400]}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del q, k, v, mask, ref, call, out
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print("\n| shape | backend | ms | TFLOP/s | rel. error vs fp32 |\n|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['shape']} | {r['backend']} | cannot run: {r['error'][:90]} | | |")
        else:
            print(
                f"| {r['shape']} | {r['backend']} | {r['ms']:.3f} | {r['tflops']:.0f} "
                f"| {r['rel_err']:.1e} |"
            )


if __name__ == "__main__":
    main()
