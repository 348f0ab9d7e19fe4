"""AV-Link: two frozen DiTs (video, audio) linked by Fusion Blocks; V2A and A2V velocities.

Directions: "v2a" generates audio tokens (B, N_a, 4 * n_mels) from video tokens (B, N_v, 3 * patch
volume); "a2v" the reverse. Flow time t: 0 noise, 1 data. The conditioning side is noised to a
fixed t_cond (0.96 V2A, 0.8 A2V) and run through its own frozen backbone beside the generated one;
Fusion Blocks between them read both residual streams and write back into both.

Per clip, `prepare_condition` returns a `ConditionCache`: the noised conditioning tokens and,
unless precompute=False, the conditioning stream entering the first Fusion Block (those blocks do
not depend on the generated side, so this exact cache changes no output). With reinjection off,
the conditioning stream never depends on the generated side and the cache holds its state at every
Fusion Block. The unconditional branch for CFG is the generated DiT alone with an empty prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from . import flow
from .dit import DiT
from .external import ExternalEncoders
from .fusion import Fusion, FusionBlock, fusion_plan, fusion_positions
from .ops import as_time
from .presets import Preset
from .text import TextContext, TextEncoder

Direction = Literal["v2a", "a2v"]
GENERATORS = ("video_dit", "audio_dit", "text")


@dataclass(frozen=True)
class Ablation:
    """Switches for the paper's ablations; the defaults are AV-Link as published."""

    reinject_cond: bool = True  # False: Fusion outputs are not added to the conditioning stream
    rope_by_index: bool = False  # True: Fusion RoPE by token index instead of timestamp
    uniform_t_cond: bool = False  # True: training draws the conditioning t ~ U(0, 1)
    external_features: bool = False  # True: a separate encoder of the clean input feeds Fusion

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ablation:
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ValueError(f"unknown ablation switches: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class ConditionCache:
    """The conditioning side of one batch of clips, reused at every sampling step.

    x_t (B, N_c, token_dim): conditioning tokens at t_cond (clean with external features);
    t_cond (B,); ctx: the prompt the conditioning backbone attends to; c (B, C_c): its time
    embedding; states: conditioning stream entering Fusion Block 0 (and every later block when it
    cannot depend on the generated side), or None to recompute everything at each call; motion:
    for V2A with FusionConfig.motion, each Fusion Block's motion term of the video; context: the
    video's MotionContext features that went into them (FusionConfig.motion_context).
    """

    direction: str
    x_t: Tensor
    t_cond: Tensor
    ctx: TextContext
    c: Tensor | None = None
    states: tuple[Tensor, ...] | None = None
    motion: tuple[Tensor, ...] | None = None  # V2A: the video's Fusion.motion_terms
    context: Tensor | None = None  # V2A: the video's Fusion.context_features

    @property
    def batch(self) -> int:
        return self.x_t.shape[0]


def sides(direction: str) -> tuple[str, str]:
    """direction -> (generated modality, conditioning modality)."""
    if direction == "v2a":
        return "audio", "video"
    if direction == "a2v":
        return "video", "audio"
    raise ValueError(f"unknown direction {direction!r}; use 'v2a' or 'a2v'")


@dataclass(frozen=True)
class _Run:
    """One velocity call's inputs, prepared before the AV-Link loop (`AVLink._prepare_run`).

    x, t, ctx: the generated rows (B' = B, or 2B with CFG) and their prompts; pe_gen: the
    generated DiT's RoPE; states: the conditioning stream entering Fusion Block 0 and, where the
    cache holds them, later blocks; advance(h, k): the conditioning backbone from block k - 1's
    depth to block k's; motion: each Fusion Block's motion term, or None.
    """

    gen: str
    batch: int
    guided: bool  # CFG: rows [x ; x], the second half unconditional
    x: Tensor
    t: Tensor
    ctx: TextContext
    pe_gen: Tensor
    c_cnd: Tensor | None = None
    states: tuple[Tensor, ...] = ()
    pe_fusion: Tensor | None = None
    advance: Callable[[Tensor, int], Tensor] | None = None
    motion: tuple[Tensor, ...] | None = None


def fuse(
    block: FusionBlock,
    gen: str,
    h_gen: Tensor,
    h_cnd: Tensor,
    c_gen: Tensor,
    c_cnd: Tensor,
    pe: Tensor,
    reinject: bool,
    motion_v: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One Fusion Block over the generated and conditioning streams -> (h_gen, h_cnd); the block
    takes (audio, video) in that order, and reinject=False leaves the conditioning stream as is."""
    if gen == "audio":
        return block(h_gen, h_cnd, c_gen, c_cnd, pe, update_v=reinject, motion_v=motion_v)
    h_cnd, h_gen = block(h_cnd, h_gen, c_cnd, c_gen, pe, update_a=reinject, motion_v=motion_v)
    return h_gen, h_cnd


class AVLink(nn.Module):
    """Video DiT, audio DiT, prompt encoder, Fusion Blocks (+ external encoders for the ablation).

    The generators and the text encoder are frozen on construction (`set_trainable` changes that
    for the generator training stages); Fusion and external encoders stay trainable.
    """

    def __init__(self, preset: Preset, ablation: Ablation | None = None) -> None:
        super().__init__()
        self.preset, self.ablation = preset, ablation or Ablation()
        text_dim = preset.text.width
        grid_v = (preset.n_frame_groups, *preset.video.grid_hw)
        self.video_dit = DiT(
            preset.video_dit, token_dim=preset.video.token_dim, grid=grid_v, context_dim=text_dim
        )
        self.audio_dit = DiT(
            preset.audio_dit,
            token_dim=preset.audio.token_dim,
            grid=(preset.n_audio_tokens,),
            context_dim=text_dim,
        )
        self.text = TextEncoder(preset.text)
        self.fusion = Fusion.for_preset(preset)
        self.external = ExternalEncoders(preset) if self.ablation.external_features else None
        # plan[k] = {"audio": block index, "video": block index} after which Fusion Block k sits
        self.plan = [
            {"audio": a, "video": v}
            for a, v in fusion_plan(
                preset.fusion.blocks, preset.audio_dit.depth, preset.video_dit.depth
            )
        ]
        self.set_trainable("fusion", "external")

    # --- components and training ---------------------------------------------------------
    def components(self) -> dict[str, nn.Module]:
        """Named components, each saved as one safetensors file."""
        parts = {
            "video_dit": self.video_dit,
            "audio_dit": self.audio_dit,
            "text": self.text,
            "fusion": self.fusion,
        }
        return parts | ({"external": self.external} if self.external is not None else {})

    def set_trainable(self, *names: str) -> list[nn.Parameter]:
        """requires_grad on the named components only (none: all frozen); returns their
        parameters. "external" may be named when the model has none."""
        parts = self.components()
        if unknown := set(names) - set(parts) - {"external"}:
            raise ValueError(f"unknown components {sorted(unknown)}; known: {list(parts)}")
        for name, module in parts.items():
            module.requires_grad_(name in names)
        return [p for name in names if name in parts for p in parts[name].parameters()]

    def fusion_parameters(self) -> list[nn.Parameter]:
        """What the Fusion stage trains: the Fusion Blocks and, with the ablation, external encoders."""
        trained = [self.fusion] + ([self.external] if self.external is not None else [])
        return [p for module in trained for p in module.parameters()]

    def dit(self, modality: str) -> DiT:
        return {"audio": self.audio_dit, "video": self.video_dit}[modality]

    # --- text ------------------------------------------------------------------------------
    def encode_text(self, prompts: str | Sequence[str]) -> TextContext:
        return self.text.encode([prompts] if isinstance(prompts, str) else list(prompts))

    def null_context(self, batch: int = 1) -> TextContext:
        """The empty prompt: the unconditional text condition."""
        return self.encode_text([""]).expand(batch)

    # --- conditioning side -----------------------------------------------------------------
    def t_cond(self, direction: str) -> float:
        """The fixed flow time the conditioning modality is noised to at inference."""
        sides(direction)
        return self.preset.t_cond_v2a if direction == "v2a" else self.preset.t_cond_a2v

    def sample_t_cond(
        self,
        direction: str,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training t_cond (B,): the fixed value, or U(0, 1) with the `uniform_t_cond` ablation."""
        if not self.ablation.uniform_t_cond:
            return torch.full((batch,), self.t_cond(direction), device=device)
        gen_device = generator.device if generator is not None else device
        return torch.rand(batch, generator=generator, device=gen_device).to(device)

    def prepare_condition(
        self,
        direction: str,
        cond_clean: Tensor,
        ctx: TextContext,
        *,
        t_cond: Tensor | float | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        precompute: bool = True,
    ) -> ConditionCache:
        """Noise the clean conditioning tokens (B, N_c, token_dim) to t_cond (default: the fixed
        value) with `noise` or N(0, I) drawn from `generator`, and run the blocks before the first
        Fusion Block once (precompute=False defers everything to each `velocity` call)."""
        _, cnd = sides(direction)
        cdit = self.dit(cnd)
        cdit.check_tokens(cond_clean)
        batch, device = cond_clean.shape[0], cond_clean.device
        ctx = ctx.expand(batch)
        if self.external is not None:  # the external encoder sees the clean input, at t = 1
            t_c, x_t = torch.ones(batch, device=device), cond_clean
        else:
            t_c = as_time(
                self.t_cond(direction) if t_cond is None else t_cond, batch, device=device
            )
            if noise is None:
                gen_device = generator.device if generator is not None else device
                noise = torch.randn(
                    cond_clean.shape, generator=generator, device=gen_device, dtype=cond_clean.dtype
                )
            x_t = flow.interpolate(noise.to(device), cond_clean, t_c)
        cache = ConditionCache(direction, x_t, t_c, ctx)
        if not precompute or not self.plan:
            return cache
        c, state0 = self._cond_start(cache)
        states = [state0]
        if not self.ablation.reinject_cond:  # the stream is independent of the generated side
            pe = cdit.rope(device=device)
            for k in range(1, len(self.plan)):
                states.append(self._cond_advance(cache, states[-1], c, pe, k))
        motion = context = None
        if cnd == "video":
            context = self.fusion.context_features(x_t)
            motion = self.fusion.motion_terms(x_t, context)
        return ConditionCache(direction, x_t, t_c, ctx, c, tuple(states), motion, context)

    def _cond_start(self, cache: ConditionCache) -> tuple[Tensor, Tensor]:
        """Conditioning time embedding c (B, C_c) and the stream entering Fusion Block 0."""
        _, cnd = sides(cache.direction)
        cdit = self.dit(cnd)
        x = cache.x_t.to(cdit.embed.proj.weight.dtype)
        if self.external is not None:
            return cdit.embed.time(cache.t_cond), getattr(self.external, cnd)(x)
        h, c = cdit.embed(x, cache.t_cond)  # (B, N_c, C_c), (B, C_c)
        pe = cdit.rope(device=x.device)
        for block in cdit.blocks[: self.plan[0][cnd] + 1]:
            h = block(h, c, pe, cache.ctx)
        return c, h

    def _cond_advance(
        self, cache: ConditionCache, h: Tensor, c: Tensor, pe: Tensor, k: int
    ) -> Tensor:
        """Run the conditioning backbone from after Fusion Block k - 1's position up to block k's."""
        if self.external is not None:
            return h
        _, cnd = sides(cache.direction)
        for block in self.dit(cnd).blocks[self.plan[k - 1][cnd] + 1 : self.plan[k][cnd] + 1]:
            h = block(h, c, pe, cache.ctx)
        return h

    def fusion_rope(self, *, device: torch.device | str | None = None) -> Tensor:
        """Fusion RoPE table over [audio ; video] -> (N_a + N_v, D / H / 2, 2)."""
        pa, pv = fusion_positions(self.preset, by_index=self.ablation.rope_by_index)
        return self.fusion.rope(torch.cat([pa, pv])).to(device)

    # --- velocities --------------------------------------------------------------------------
    def velocity(
        self, direction: str, x: Tensor, t: Tensor | float, cache: ConditionCache, ctx: TextContext
    ) -> Tensor:
        """Generated tokens x (B, N_gen, token_dim) at flow time t -> velocity, Fusion on."""
        return self._run(self._prepare_run(direction, x, t, cache, ctx))[0]

    def velocity_cfg(
        self,
        direction: str,
        x: Tensor,
        t: Tensor | float,
        cache: ConditionCache,
        ctx: TextContext,
        uncond_ctx: TextContext,
    ) -> tuple[Tensor, Tensor]:
        """Conditional and unconditional velocities in one batched pass of the generated DiT:
        rows [x ; x] with prompts [ctx ; uncond_ctx]; Fusion touches only the first half."""
        return self._run(self._prepare_run(direction, x, t, cache, ctx, uncond_ctx))

    def uncond_velocity(
        self, direction: str, x: Tensor, t: Tensor | float, ctx: TextContext
    ) -> Tensor:
        """The generated DiT alone (no Fusion, no conditioning backbone)."""
        gen, _ = sides(direction)
        return self.dit(gen)(x, t, ctx.expand(x.shape[0]))

    def _run(self, run: _Run) -> tuple[Tensor, ...]:
        """The AV-Link loop: the generated tokens x (B, N_gen, token_dim) at flow time t of one
        velocity call (`_prepare_run`) -> velocity.

        The generated backbone runs block by block. At each Fusion Block's depth the conditioning
        stream is advanced to the same depth (or read from the cache), the block attends over
        both streams and writes back into both: the generated stream, and the conditioning
        stream that the next block reads (reinjection). With CFG, rows [x ; x] run with prompts
        [ctx ; uncond_ctx] and Fusion touches the first half only: (v_cond, v_uncond).
        """
        gen, n, gdit, plan = run.gen, run.batch, self.dit(run.gen), self.plan
        h, c = gdit.embed(run.x.to(gdit.embed.proj.weight.dtype), run.t)  # (B', N_gen, C_gen)
        h_cnd, done = (run.states[0] if run.states else None), 0  # done: generated blocks run
        for k, block in enumerate(self.fusion.blocks):
            for gblock in gdit.blocks[done : plan[k][gen] + 1]:
                h = gblock(h, c, run.pe_gen, run.ctx)
            done = plan[k][gen] + 1
            if k > 0:
                h_cnd = run.states[k] if k < len(run.states) else run.advance(h_cnd, k)
            # the last block's conditioning output is never read, so it is not computed
            reinject = self.ablation.reinject_cond and k < len(self.fusion.blocks) - 1
            motion_v = None if run.motion is None else run.motion[k]
            h_gen, h_cnd = fuse(
                block, gen, h[:n], h_cnd, c[:n], run.c_cnd, run.pe_fusion, reinject, motion_v
            )
            h = torch.cat([h_gen, h[n:]]) if run.guided else h_gen  # (B', N_gen, C_gen)
        for gblock in gdit.blocks[done:]:
            h = gblock(h, c, run.pe_gen, run.ctx)
        v = gdit.velocity_of(gdit.head(h, c), run.x, run.t)  # (B', N_gen, token_dim)
        return tuple(v.chunk(2)) if run.guided else (v,)

    def _prepare_run(
        self,
        direction: str,
        x: Tensor,
        t: Tensor | float,
        cache: ConditionCache,
        ctx: TextContext,
        uncond_ctx: TextContext | None = None,
    ) -> _Run:
        """What `_run` needs before its loop, for generated tokens x (B, N_gen, token_dim) at flow
        time t with prompt ctx (and uncond_ctx, for CFG): the checks, the CFG rows, the RoPE tables, the
        conditioning stream entering Fusion Block 0 (cached, or computed here) and the motion
        terms of the video tokens (FusionConfig.motion, for the Fusion rows only)."""
        gen, cnd = sides(direction)
        if cache.direction != direction:
            raise ValueError(f"condition prepared for {cache.direction}, asked for {direction}")
        self.dit(gen).check_tokens(x)
        batch, device = x.shape[0], x.device
        if cache.batch != batch:
            raise ValueError(f"condition has batch {cache.batch}, tokens have {batch}")
        t = as_time(t, batch, device=device)
        ctx = ctx.expand(batch)
        if uncond_ctx is not None:  # [cond ; uncond] rows share every generated-DiT call
            x, t = torch.cat([x, x]), torch.cat([t, t])
            ctx = TextContext.cat([ctx, uncond_ctx.expand(batch)])
        if gen == "audio":
            motion = cache.motion or self.fusion.motion_terms(cache.x_t)
        else:
            motion = self.fusion.motion_terms(x[:batch])
        pe_gen = self.dit(gen).rope(device=device)
        run = _Run(gen, batch, uncond_ctx is not None, x, t, ctx, pe_gen, motion=motion)
        if not self.plan:
            return run
        c_cnd, h_cnd = (
            (cache.c, cache.states[0]) if cache.states is not None else self._cond_start(cache)
        )
        pe_cnd = self.dit(cnd).rope(device=device)
        return replace(
            run,
            c_cnd=c_cnd,
            states=cache.states if cache.states is not None else (h_cnd,),
            pe_fusion=self.fusion_rope(device=device),
            advance=lambda h, k: self._cond_advance(cache, h, c_cnd, pe_cnd, k),
        )
