"""Which attention kernel does each of the model's attention calls get, per `--sdpa` order?

Runs a few eager V2A sampling steps of the paper preset (random weights, bf16, batch 16) per order
and records torch._fused_sdp_choice for every distinct attention call (shapes, strides, mask,
inference mode), next to the ms per step. Kernels: 0 math, 1 flash, 2 memory-efficient, 3 cuDNN.

    python experiments/sdpa_choice.py [ORDER ...]      (default: auto cudnn flash)
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from avlink_cli import bench

calls: dict[str, int] = {}
_sdpa = F.scaled_dot_product_attention


def spy(q, k, v, attn_mask=None, **kw):
    key = (
        f"q{tuple(q.shape)}{q.stride()} k{tuple(k.shape)}{k.stride()} v{v.stride()} "
        f"mask={attn_mask is not None} inference={torch.is_inference_mode_enabled()}"
    )
    if key not in calls:
        calls[key] = int(torch._fused_sdp_choice(q, k, v, attn_mask))
    return _sdpa(q, k, v, attn_mask=attn_mask, **kw)


if __name__ == "__main__":
    F.scaled_dot_product_attention = spy
    for order in sys.argv[1:] or ["auto", "cudnn", "flash"]:
        calls.clear()
        r = bench.bench_sampling(
            "paper", device="cuda", dtype="bfloat16", batch_size=16, steps=5, sdpa=order
        )
        print(json.dumps({"sdpa": order, "ms_per_step": r["ms_per_step"], "calls": calls}))
