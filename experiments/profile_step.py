"""Where the time of one sampling step goes: kernel time by kind, and the top kernels.

Builds the bench's model (a preset with random weights, bf16 on a GPU), compiles it if asked,
warms up, then profiles `--steps` sampling steps with torch.profiler and sums device time per
kernel: matrix products, attention, inductor's fused (Triton) kernels, the rest. Then times the
MLP's first linear with its GELU as two kernels against cuBLASLt's fused GELU epilogue
(torch._addmm_activation) on the video shape.

    python experiments/profile_step.py --preset paper --direction v2a --batch-size 16 --compile
"""

from __future__ import annotations

import argparse
import collections
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from avlink_cli.bench import median_ms, sampling_run
from avlink_cli.presets import get_preset

KINDS = [  # (kind, substrings of the kernel name), first match wins: inductor's kernels first,
    # since their names list the ops they fuse ("..._scaled_dot_product_cudnn_attention_...")
    ("triton (fused pointwise / norms)", ("triton",)),
    ("attention", ("fmha", "flash", "cudnn", "attention", "attn")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "sm90")),
]


def kind(name: str) -> str:
    low = name.lower()
    return next((k for k, keys in KINDS if any(s in low for s in keys)), "other")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--direction", default="v2a")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    engine, run = sampling_run(
        get_preset(args.preset),
        device=args.device,
        batch_size=args.batch_size,
        direction=args.direction,
        compile=args.compile,
    )
    dev, dt, model, b = engine.device, engine.dtype, engine.model, args.batch_size

    t0 = time.perf_counter()
    run(2)
    print(f"# warm-up (compile: {args.compile}) {time.perf_counter() - t0:.1f} s", flush=True)
    cuda = dev.type == "cuda"
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        run(args.steps)
    if cuda:
        torch.cuda.synchronize()
    per_kernel: dict[str, float] = collections.Counter()
    counts: dict[str, int] = collections.Counter()
    for e in prof.events():
        if cuda and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = e.time_range.elapsed_us() if cuda else e.self_cpu_time_total
        per_kernel[e.name] += us
        counts[e.name] += 1
    total = sum(per_kernel.values()) or 1.0
    by_kind: dict[str, float] = collections.Counter()
    for name, us in per_kernel.items():
        by_kind[kind(name)] += us
    print(f"\n{args.preset} {args.direction} batch {b}, {args.steps} steps (sampling includes the")
    print(f"text and the exact cache once): {total / 1e3:.1f} ms of kernels\n")
    print("| kind | ms per step | share |\n|---|---|---|")
    for k, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {us / 1e3 / args.steps:.1f} | {100 * us / total:.1f}% |")
    print("\n| kernel | calls | ms per step | share |\n|---|---|---|---|")
    for name, us in sorted(per_kernel.items(), key=lambda kv: -kv[1])[: args.top]:
        print(
            f"| {name[:90]} | {counts[name]} | {us / 1e3 / args.steps:.2f} | {100 * us / total:.1f}% |"
        )
    if cuda:
        epilogue(model.preset, b, dev, dt)


def epilogue(preset, batch: int, dev: torch.device, dt: torch.dtype) -> None:
    """The video MLP's fc1 + GELU: two kernels against cuBLASLt's fused GELU epilogue."""
    c = preset.video_dit.width
    hidden = round(c * preset.video_dit.mlp_ratio)
    m = batch * preset.n_video_tokens
    x = torch.randn(m, c, device=dev, dtype=dt)
    w = torch.randn(hidden, c, device=dev, dtype=dt) / c**0.5
    bias = torch.randn(hidden, device=dev, dtype=dt)

    def two() -> torch.Tensor:
        return F.gelu(F.linear(x, w, bias), approximate="tanh")

    def fused() -> torch.Tensor:
        return torch._addmm_activation(bias, x, w.t(), use_gelu=True)

    ref = F.gelu(F.linear(x[:512].float(), w.float(), bias.float()), approximate="tanh")
    for name, fn in (("linear + gelu", two), ("_addmm_activation(gelu)", fused)):
        out = fn()
        err = ((out[:512].float() - ref).norm() / ref.norm()).item()
        ms = median_ms(fn)
        print(f"fc1 ({m}x{c} @ {c}x{hidden}) {name}: {ms:.3f} ms, rel. error {err:.1e}")


if __name__ == "__main__":
    main()
