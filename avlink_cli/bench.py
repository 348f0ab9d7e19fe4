"""`avlink bench`: how fast sampling runs, against what the hardware could do.

Two modes:

- `bench_sampling` (no model needed): AV-Link of a preset with random weights, built on the
  device in the compute dtype; times batched sampling of one window (text encoding and the
  conditioning cache included, decoding not) and reports ms per step, seconds per clip, the
  real-time factor, analytic FLOPs per step, achieved TFLOP/s, MFU and peak memory.
- `bench_model` (a model folder): end-to-end `longform.dub` / `longform.animate` on synthetic inputs
  one window long, batch 1 and batch B: seconds per clip and real-time factor.

Real-time factor = seconds of compute per second of media (below 1 is faster than real time).

FLOPs count matmuls only (2 * N * in * out per linear, 4 * N^2 * d per head and attention layer)
of one sampling step, as AV-Link runs it: the generated DiT in full, twice as many rows with
CFG (conditional and unconditional in one batch); the conditioning DiT's blocks between the first
and the last Fusion Block (earlier ones are in the exact cache, later ones never read; none
without reinjection, when the cache holds the whole conditioning stream); every
Fusion Block. Heun makes two velocity calls a step.
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import longform
from .avlink import AVLink, sides
from .devices import resolve_device, resolve_dtype
from .options import Sampling
from .pipeline import Engine
from .presets import DiTConfig, Preset, get_preset

# Dense peak TFLOP/s by GPU name (first match wins): (bf16/fp16 tensor cores, fp32 without TF32)
PEAK_TFLOPS: list[tuple[str, float, float]] = [
    ("H100 PCIe", 756.0, 51.0),
    ("H100", 989.0, 67.0),
    ("H200", 989.0, 67.0),
    ("A100", 312.0, 19.5),
]


# `--sdpa`: which attention kernels scaled_dot_product_attention may pick, in priority order (auto:
# PyTorch's own; docs/performance.md says which it picks on an H200, experiments/sdpa_choice.py
# measures it). Kernels that cannot run a call (flash with the text mask) fall through.
SDPA_ORDERS: dict[str, list[SDPBackend] | None] = {
    "auto": None,
    "cudnn": [
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ],
    "flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
}


def sdpa_order(name: str) -> contextlib.AbstractContextManager:
    """A context in which attention picks its kernels in the order SDPA_ORDERS[name]."""
    if name not in SDPA_ORDERS:
        raise ValueError(f"unknown --sdpa {name!r}; choose from {', '.join(SDPA_ORDERS)}")
    order = SDPA_ORDERS[name]
    return contextlib.nullcontext() if order is None else sdpa_kernel(order, set_priority=True)


def _dit_block(cfg: DiTConfig, n: int, ctx: int, ctx_dim: int) -> float:
    """FLOPs of one DiT block over n tokens for one sample (text context of ctx tokens)."""
    c, hidden = cfg.width, round(cfg.width * cfg.mlp_ratio)
    self_attn = 2 * n * c * 3 * c + 4 * n * n * c + 2 * n * c * c
    cross = 2 * n * c * c + 2 * ctx * ctx_dim * 2 * c + 4 * n * ctx * c + 2 * n * c * c
    return self_attn + cross + 2 * 2 * n * c * hidden + 2 * c * 6 * c


def _dit_ends(cfg: DiTConfig, n: int, token_dim: int) -> float:
    """Embedding, time MLP and head of one DiT for one sample."""
    c = cfg.width
    return 2 * n * token_dim * c + 2 * (256 * c + c * c) + 2 * n * c * token_dim + 2 * c * 2 * c


def _fusion_stream(c: int, n: int, d: int, hidden: int, *, leave: bool) -> float:
    enter = 2 * c * (3 * c + 3 * d) + 2 * n * c * d + 2 * n * d * 3 * d
    return enter + (2 * n * d * d + 2 * n * d * hidden + 2 * n * hidden * c if leave else 0)


def step_flops(model: AVLink, direction: str, batch: int, *, cfg: bool = True) -> dict[str, float]:
    """Analytic matmul FLOPs of one velocity call for `batch` clips, by part, and their total."""
    p, (gen, cnd) = model.preset, sides(direction)
    n = {"audio": p.n_audio_tokens, "video": p.n_video_tokens}
    dims = {"audio": p.audio.token_dim, "video": p.video.token_dim}
    cfgs = {"audio": p.audio_dit, "video": p.video_dit}
    ctx, ctx_dim = p.text.max_tokens, p.text.width
    rows = 2 * batch if cfg else batch
    g = cfgs[gen]
    generated = rows * (
        g.depth * _dit_block(g, n[gen], ctx, ctx_dim) + _dit_ends(g, n[gen], dims[gen])
    )
    plan, ab = model.plan, model.ablation
    # without reinjection (or with external features) the whole conditioning stream is cached
    live = plan and ab.reinject_cond and not ab.external_features
    cond_blocks = plan[-1][cnd] - plan[0][cnd] if live else 0
    conditioning = batch * cond_blocks * _dit_block(cfgs[cnd], n[cnd], ctx, ctx_dim)
    f = p.fusion
    hidden, total_n = round(f.width * f.mlp_ratio), n["audio"] + n["video"]
    fusion = 0.0
    for k in range(len(plan)):
        reinject = ab.reinject_cond and k < len(plan) - 1
        fusion += 4 * total_n * total_n * f.width
        fusion += _fusion_stream(cfgs[gen].width, n[gen], f.width, hidden, leave=True)
        fusion += _fusion_stream(cfgs[cnd].width, n[cnd], f.width, hidden, leave=reinject)
        if f.motion and gen == "video":  # the motion MLP (2 * token_dim -> D -> D); V2A caches it
            fusion += 2 * n["video"] * (2 * dims["video"] + f.width) * f.width
    fusion *= batch
    parts = {"generated_dit": generated, "conditioning_dit": conditioning, "fusion": fusion}
    return parts | {"total": sum(parts.values())}


def gpu_peak(name: str, dtype: torch.dtype) -> tuple[float | None, str]:
    """A GPU's dense peak TFLOP/s for dtype from `PEAK_TFLOPS` (None if not listed)."""
    low = dtype in (torch.bfloat16, torch.float16)
    for key, half, single in PEAK_TFLOPS:
        if key in name:
            return (half if low else single), f"{name} dense {'bf16' if low else 'fp32'} spec"
    return None, f"{name}: peak unknown"


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from): the table for known GPUs, a measured fp32 matmul on
    the CPU, None otherwise."""
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device), dtype)
    if device.type == "cpu":
        a = torch.randn(1024, 1024, dtype=dtype)
        a @ a
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            a @ a
            n += 1
        tflops = n * 2 * 1024**3 / (time.perf_counter() - t0) / 1e12
        return (
            tflops,
            f"measured {dtype_name(dtype)} 1024^3 matmul, {torch.get_num_threads()} threads",
        )
    return None, f"{device.type}: peak unknown"


def measured_matmul_tflops(device: torch.device, dtype: torch.dtype) -> float | None:
    """TFLOP/s of a large square matmul in dtype on a GPU (8192^3 in bf16/fp16, 4096^3 otherwise),
    best of 3 timings of 10 calls: the ceiling that dense layers can reach here."""
    if device.type != "cuda":
        return None
    n = 8192 if dtype in (torch.bfloat16, torch.float16) else 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / 10)
    del a, b
    return 2 * n**3 / best / 1e12


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "torch.cuda.max_memory_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10), "process peak RSS"


def sampling_run(
    preset: Preset,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 1,
    direction: str = "v2a",
    cfg: float = 3.0,
    sampler: str = "euler",
    compile: bool = False,
    cuda_graphs: bool = False,
    sdpa: str = "auto",
) -> tuple[Engine, Callable[[int], float]]:
    """AV-Link of a preset with random weights (seed 0) on the device in the compute dtype, and
    run(n_steps): batched sampling of fresh random inputs for one window (text encoding and the
    conditioning cache included, decoding not), in seconds between device synchronisations."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    torch.manual_seed(0)
    with torch.device(dev):
        model = AVLink(preset)
    engine = Engine(model, device=dev, dtype=dt, compile=compile, cuda_graphs=cuda_graphs)
    (n_gen, d_gen), (n_cnd, d_cnd) = engine.token_shape(direction)

    def run(n_steps: int) -> float:
        inputs = {
            "x0": torch.randn(batch_size, n_gen, d_gen, device=dev),
            "cond_noise": torch.randn(batch_size, n_cnd, d_cnd, device=dev),
        }
        cond = torch.randn(batch_size, n_cnd, d_cnd, device=dev)
        prompts = ["a wooden ball bounces on a metal floor"] * batch_size
        _sync(dev)
        t0 = time.perf_counter()
        with sdpa_order(sdpa):
            engine.sample(
                direction,
                cond,
                prompts=prompts,
                negative_prompts=[""] * batch_size,
                steps=n_steps,
                cfg=cfg,
                sampler=sampler,
                **inputs,
            )
        _sync(dev)
        return time.perf_counter() - t0

    return engine, run


def median_ms(fn: Callable[[], object], reps: int = 20) -> float:
    """Median milliseconds of fn() over `reps` calls after 3 warm-up calls: CUDA events around
    each call on a GPU, the wall clock otherwise."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def bench_sampling(
    preset: Preset | str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 1,
    steps: int = 25,
    direction: str = "v2a",
    cfg: float = 3.0,
    sampler: str = "euler",
    compile: bool = False,
    cuda_graphs: bool = False,
    sdpa: str = "auto",
    repeats: int = 1,
) -> dict[str, Any]:
    """Time `steps` sampling steps of `batch_size` clips with random weights (after a warm-up
    call) and relate them to the analytic FLOPs, the device's spec peak and, on a GPU, the rate
    of a large matmul measured here. sdpa: attention kernel order (SDPA_ORDERS)."""
    preset = get_preset(preset) if isinstance(preset, str) else preset
    sdpa_order(sdpa)  # an unknown name fails here, before the model is built
    engine, run = sampling_run(
        preset,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        direction=direction,
        cfg=cfg,
        sampler=sampler,
        compile=compile,
        cuda_graphs=cuda_graphs,
        sdpa=sdpa,
    )
    model, dev, dt = engine.model, engine.device, engine.dtype
    run(2 if compile else 1)  # warm-up: kernels, allocator, compilation
    _reset_memory(dev)
    seconds = min(run(steps) for _ in range(max(1, repeats)))
    calls = 2 if sampler == "heun" else 1
    flops = step_flops(model, direction, batch_size, cfg=cfg != 1.0)
    per_step = seconds / steps
    achieved = calls * flops["total"] / per_step / 1e12
    peak, peak_source = device_peak(dev, dt)
    memory, memory_source = peak_memory_mb(dev)
    matmul = measured_matmul_tflops(dev, dt)
    return {
        "preset": preset.name,
        "direction": direction,
        "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "dtype": dtype_name(dt),
        "batch_size": batch_size,
        "steps": steps,
        "sampler": sampler,
        "cfg": cfg,
        "compile": compile,
        "cuda_graphs": engine.cuda_graphs,
        "sdpa": sdpa,
        "ms_per_step": per_step * 1e3,
        "seconds_per_clip": seconds / batch_size,
        "clip_seconds": preset.duration,
        "realtime_factor": seconds / batch_size / preset.duration,
        "gflop_per_step": calls * flops["total"] / 1e9,
        "gflop_by_part": {k: v / 1e9 for k, v in flops.items() if k != "total"},
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "mfu": achieved / peak if peak else None,
        "matmul_tflops": matmul,
        "mfu_of_matmul": achieved / matmul if matmul else None,
        "peak_memory_mb": memory,
        "memory_source": memory_source,
    }


def _synthetic(preset: Preset, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One window of input per clip: a bright square hopping across grey frames, and clicks."""
    gen = torch.Generator().manual_seed(seed)
    v, t = preset.video, preset.n_frames
    frames = torch.full((batch, t, v.height, v.width, 3), 96, dtype=torch.uint8)
    side = max(2, v.height // 4)
    for k in range(t):
        y, x = (k * 3) % (v.height - side), (k * 5) % (v.width - side)
        frames[:, k, y : y + side, x : x + side] = 230
    wav = 0.01 * torch.randn(batch, preset.n_samples, generator=gen)
    for s in range(0, preset.n_samples, preset.audio.sample_rate // 2):
        wav[:, s : s + 400] += 0.5 * torch.randn(
            batch, min(400, preset.n_samples - s), generator=gen
        )
    return frames, wav.clamp(-1, 1)


TASKS = (("dub", "v2a"), ("animate", "a2v"))  # bench_model's tasks and their directions


def bench_model(
    engine: Engine, *, batch_size: int = 4, steps: int | None = None, cfg: float | None = None
) -> dict[str, Any]:
    """End-to-end seconds per clip of dub and animate (one window each), batch 1 and batch B."""
    p = engine.preset
    rows = []
    for task, _ in TASKS:
        for batch in sorted({1, batch_size}):
            frames, wav = _synthetic(p, batch)
            fn = longform.dub if task == "dub" else longform.animate
            inputs = frames if task == "dub" else wav
            fn(engine, inputs[:1], Sampling(steps=1, cfg=cfg))  # warm-up
            _sync(engine.device)
            t0 = time.perf_counter()
            fn(engine, inputs, Sampling(steps=steps, cfg=cfg, batch_size=batch))
            _sync(engine.device)
            per_clip = (time.perf_counter() - t0) / batch
            rows.append(
                {
                    "task": task,
                    "batch_size": batch,
                    "seconds_per_clip": per_clip,
                    "realtime_factor": per_clip / p.duration,
                }
            )
    memory, memory_source = peak_memory_mb(engine.device)
    return {
        "model": engine.name,
        "preset": p.name,
        "device": str(engine.device),
        "dtype": dtype_name(engine.dtype),
        "steps": {t: engine.default_steps(d) if steps is None else steps for t, d in TASKS},
        "cfg": {t: engine.default_cfg(d) if cfg is None else cfg for t, d in TASKS},
        "clip_seconds": p.duration,
        "vocoder": type(engine.vocoder).__name__,
        "results": rows,
        "peak_memory_mb": memory,
        "memory_source": memory_source,
    }
