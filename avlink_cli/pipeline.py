"""Inference of one window: batched tensors in, tensors out.

`Engine` holds a loaded AV-Link model on a device in a compute dtype, and the vocoder (the model
folder's neural vocoder, else Griffin-Lim). It knows one window of the model's clip length:
`encode` (media -> conditioning tokens), `sample` (tokens in and tokens out, with optional
inpainting of known tokens: how long inputs continue across a seam) and `decode` (tokens ->
media). Media of any length is `longform.dub` / `longform.animate`, which cut it into windows.

Time conventions. Flow time t: 0 is noise, 1 is data (flow.py). Media time: frame k of a video at
the preset's fps is at k / fps seconds, sample n of a waveform at n / 16000.

Seeds: every clip draws its noise from its own CPU generator seeded by `clip_seed(base, key,
sample)`, so a clip's output does not depend on what it was batched with, nor on the device's
random number generator.

The sampling loop makes no host-device synchronisation: the time grid lives on the device
(flow.sample), the velocity function has no data-dependent Python branch, and the RoPE tables
are computed once (`_cache_rope`) instead of on the host at every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import flow
from .avlink import AVLink
from .codecs import GriffinLim, tokens_to_mel, tokens_to_video, video_to_tokens, wav_to_tokens
from .devices import resolve_device, resolve_dtype
from .presets import Preset

DEFAULT_STEPS = 25
DEFAULT_CFG = 3.0
StepFn = Callable[[int, int], None]  # (steps done, total steps)


def clip_seed(base: int, key: str | int, sample: int = 0) -> int:
    """The seed of one clip's noise: a 63-bit hash of (base seed, clip key, sample index).

    The key is the input's file name (or its index in a tensor batch), so a clip's output does
    not depend on its position in a batch, a shard or a folder listing.
    """
    digest = hashlib.sha256(f"{int(base)}/{key}/{int(sample)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _cache_rope(model: AVLink, device: torch.device) -> None:
    """Compute the RoPE tables of both backbones and the Fusion Blocks once, on `device`.

    AVLink asks for them at every velocity call; the fusion table is built on the host and
    copied over, a synchronising transfer inside the sampling loop (and one a CUDA graph cannot
    capture). The tables depend only on the preset, so instance attributes shadow the methods.
    """
    for dit in (model.video_dit, model.audio_dit):
        table = dit.rope(device=device)
        dit.rope = lambda *, device=None, _t=table: _t  # type: ignore[method-assign]
    fusion = model.fusion_rope(device=device)
    model.fusion_rope = lambda *, device=None, _t=fusion: _t  # type: ignore[method-assign]


def _graphed(v: flow.VelocityFn, x: Tensor, t: Tensor, *, warm_up: bool) -> flow.VelocityFn:
    """Capture v(x, t) as a CUDA graph with static inputs; other devices get v unchanged.

    The graph replays every kernel of one velocity call with a single launch. Capturing records
    kernels without running them; a warm-up call on a side stream first (cuBLAS handles and
    workspaces, the allocator) is needed once per shape. Inputs are copied into the captured
    buffers; the output is cloned because Heun holds two velocities at once.
    """
    if x.device.type != "cuda":
        return v
    static_x, static_t = x.clone(), t.clone()
    if warm_up:
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            v(static_x, static_t)
        torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = v(static_x, static_t)

    def replay(x: Tensor, t: Tensor) -> Tensor:
        static_x.copy_(x)
        static_t.copy_(t)
        graph.replay()
        return static_out.clone()

    return replay


def inpainted(v: flow.VelocityFn, x0: Tensor, known: Tensor, mask: Tensor) -> flow.VelocityFn:
    """Hold the tokens where mask (B, N) is True on the straight path from x0 to `known`.

    Their velocity becomes known - x0, so any solver keeps them at x_t = t * known + (1 - t) * x0
    = flow.interpolate(x0, known, t) while v moves the others; the generated tokens see them
    through attention at every step. x0, known (B, N, D), mask (B, N) bool.
    """
    path_velocity, where = known - x0, mask[..., None]  # (B, N, D), (B, N, 1)

    def v_inpainted(x: Tensor, t: Tensor) -> Tensor:
        return torch.where(where, path_velocity, v(x, t))

    return v_inpainted


class Engine:
    """A model ready to sample: AV-Link on a device in a compute dtype, plus its vocoder.

    Sampling defaults (steps, CFG scale, time shift) come from the model folder's `meta`
    ("steps", "cfg", "shift") when it has them; each may be given per direction, as
    {"v2a": ..., "a2v": ...}. The shift defaults to the generated DiT's own (DiTConfig.sampling_shift).
    """

    def __init__(
        self,
        model: AVLink,
        *,
        vocoder: torch.nn.Module | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        meta: dict[str, Any] | None = None,
        name: str = "",
        folder: Path | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.preset: Preset = model.preset
        self.meta, self.name = dict(meta or {}), name
        self.folder = folder  # the model folder it was loaded from, for provenance
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._warm: set[tuple] = set()  # shapes whose CUDA-graph capture has been warmed up
        # the vocoder runs in float32: it is small, and bf16 audio is audibly noisy
        self.vocoder = (
            vocoder.to(self.device, torch.float32).eval()
            if vocoder is not None
            else GriffinLim(self.preset.audio)
        )
        _cache_rope(self.model, self.device)
        if compile:
            for blocks in (model.video_dit.blocks, model.audio_dit.blocks, model.fusion.blocks):
                for block in blocks:
                    block.compile()

    @classmethod
    def from_folder(
        cls,
        spec: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        offline: bool | None = None,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> Engine:
        """Resolve `spec` (preset name, folder or Hub id; hub.HubError if none) and load it."""
        from .checkpoint import load_model
        from .hub import resolve_model

        folder = resolve_model(str(spec), offline=offline)
        dev = resolve_device(device)
        loaded = load_model(folder, device=dev)  # stored dtype; the engine casts the model only
        return cls(
            loaded.model,
            vocoder=loaded.vocoder,
            device=dev,
            dtype=resolve_dtype(dtype, dev),
            meta=loaded.meta,
            name=str(spec),
            folder=folder,
            compile=compile,
            cuda_graphs=cuda_graphs,
        )

    # --- defaults ------------------------------------------------------------------------------
    def default_steps(self, direction: str) -> int:
        return int(self._default("steps", direction, DEFAULT_STEPS))

    def default_cfg(self, direction: str) -> float:
        return float(self._default("cfg", direction, DEFAULT_CFG))

    def _default(self, key: str, direction: str, fallback: float) -> float:
        """meta[key]: one value for both directions, or {"v2a": ..., "a2v": ...}."""
        value = self.meta.get(key, fallback)
        return value.get(direction, fallback) if isinstance(value, dict) else value

    def default_shift(self, direction: str) -> float:
        gen = "audio" if direction == "v2a" else "video"
        return float(self._default("shift", direction, self.model.dit(gen).cfg.sampling_shift))

    # --- media <-> tokens, one window ------------------------------------------------------------
    def encode(self, direction: str, media: Tensor) -> Tensor:
        """Conditioning media of one window -> tokens (B, N_c, token_dim) float32 on the device.

        v2a: frames uint8 (B, n_frames, H, W, 3); a2v: waveform (B, n_samples) at 16 kHz.
        """
        if direction == "v2a":
            return video_to_tokens(media.to(self.device), self.preset.video)
        return wav_to_tokens(media.to(self.device, torch.float32), self.preset.audio)

    @torch.inference_mode()
    def decode(self, direction: str, tokens: Tensor) -> Tensor:
        """Generated tokens of one window -> media on the host.

        v2a: waveform (B, n_samples) float32 in [-1, 1]; a2v: frames uint8 (B, n_frames, H, W, 3).
        """
        if direction == "v2a":
            mel = tokens_to_mel(tokens.float(), self.preset.audio.n_mels)  # (B, n_mels, T)
            if isinstance(self.vocoder, GriffinLim):  # its start phase is drawn per batch: one
                wav = torch.cat([self.vocoder(m[None]) for m in mel])  # row at a time keeps a
            else:  # clip's audio independent of its batch
                wav = self.vocoder(mel)
            return wav.float().clamp(-1, 1).cpu()
        return tokens_to_video(tokens.float(), self.preset).cpu()

    def token_shape(self, direction: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """((N_gen, gen token_dim), (N_cond, cond token_dim)) of one window."""
        p = self.preset
        audio = (p.n_audio_tokens, p.audio.token_dim)
        video = (p.n_video_tokens, p.video.token_dim)
        return (audio, video) if direction == "v2a" else (video, audio)

    # --- sampling ------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(
        self,
        direction: str,
        cond: Tensor,
        *,
        x0: Tensor,
        cond_noise: Tensor,
        prompts: Sequence[str],
        negative_prompts: Sequence[str],
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str = "euler",
        known: Tensor | None = None,
        known_mask: Tensor | None = None,
        callback: StepFn | None = None,
    ) -> Tensor:
        """Generate one window: tokens (B, N_gen, token_dim) float32, from noise x0 at t = 0.

        cond (B, N_c, token_dim) clean conditioning tokens, noised with `cond_noise` to the
        model's t_cond. known (B, N_gen, token_dim) with known_mask (B, N_gen) bool: tokens held
        on the straight path x_t = t * known + (1 - t) * x0 while the rest is generated (their
        velocity is replaced by known - x0, exactly what replacing them by
        flow.interpolate(x0, known, t) after every step gives, for Euler and Heun alike); they
        equal `known` in the result.
        """
        steps = self.default_steps(direction) if steps is None else steps
        cfg = self.default_cfg(direction) if cfg is None else cfg
        model, dev = self.model, self.device
        x0, cond = x0.to(dev, torch.float32), cond.to(dev, torch.float32)
        ctx = model.encode_text(list(prompts))
        neg = model.encode_text(list(negative_prompts)) if cfg != 1.0 else None
        cache = model.prepare_condition(direction, cond, ctx, noise=cond_noise.to(dev))

        def v(x: Tensor, t: Tensor) -> Tensor:
            if neg is None:
                return model.velocity(direction, x, t, cache, ctx)
            v_c, v_u = model.velocity_cfg(direction, x, t, cache, ctx, neg)
            return flow.cfg(v_c, v_u, cfg)

        if self.cuda_graphs:
            key = (direction, tuple(x0.shape), cfg != 1.0)
            v = _graphed(v, x0, torch.zeros(x0.shape[0], device=dev), warm_up=key not in self._warm)
            self._warm.add(key)
        if known is not None and known_mask is not None:
            known, mask = known.to(dev, torch.float32), known_mask.to(dev)
            v = inpainted(v, x0, known, mask)
        step_cb = None if callback is None else (lambda i, n, x: callback(i, n))
        x = flow.sample(
            v,
            x0,
            steps=steps,
            method=sampler,
            shift=self.default_shift(direction),
            callback=step_cb,
        )
        if known is not None and known_mask is not None:
            x = torch.where(mask[..., None], known, x)  # exact at t = 1, not only to rounding
        return x
