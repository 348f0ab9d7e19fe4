"""The Fusion Block, the plan that interleaves N of them through two backbones, and the
time-aligned RoPE positions they attend with.

A Fusion Block reads the audio and video residual streams at one depth and returns both updated
(AV-Link, arXiv 2412.15191, Sec. 3.2). Per modality, with its own weights and its own flow time:

    1. adaLN modulation of the stream (shift1, scale1 from the modality's time embedding c)
    2. projection to the shared width D
    3. 1D RoPE at the token's timestamp in seconds * rope_scale (aligned across modalities)
    4. joint multi-head self-attention over [audio ; video]                       (shared)
    5. output projection
    6. gate1 (residual in width D)
    7. modulation (shift2, scale2)
    8. MLP back to the backbone's width
    9. gate2, added to the backbone stream

Every modulation, gates included, comes from an adaLN linear of the time embedding whose weights
start at zero: shifts and scales at 0, both gates at 1. The MLP's output layer starts at zero, so
a fresh Fusion Block is the identity and AV-Link starts out computing exactly what the frozen
generators compute. Zeroing the output layer rather than both gates (adaLN-Zero twice in series)
avoids a saddle: with gate1 = gate2 = 0 the attention path gets no gradient at all, while a zero
output layer gets the full `dL/dx ⊗ hidden` at the first step.

The video half may also read motion features (fusion_motion.py); the "extractor features"
ablation's encoders are in external.py.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import fusion_motion
from .fusion_motion import MotionContext, motion_mlp
from .layers import Mlp, SelfAttention, init_standard
from .ops import attention, modulate, rope
from .presets import FusionConfig, Preset


def fusion_plan(n_blocks: int, depth_a: int, depth_v: int) -> list[tuple[int, int]]:
    """For each Fusion Block k, the (audio, video) block index after which it sits.

    The blocks split each backbone into n_blocks + 1 near-equal spans: block k sits after
    round((k + 1) * depth / (n_blocks + 1)) backbone blocks (at least one). fusion_plan(8, 24, 24)
    puts them after blocks 2, 4, 7, 10, 12, 15, 18, 20 of both.
    """

    def after(k: int, depth: int) -> int:
        return min(max(math.floor((k + 1) * depth / (n_blocks + 1) + 0.5), 1), depth) - 1

    return [(after(k, depth_a), after(k, depth_v)) for k in range(n_blocks)]


def fusion_positions(preset: Preset, *, by_index: bool = False) -> tuple[Tensor, Tensor]:
    """RoPE positions of the Fusion Blocks' audio (N_a,) and video (N_v,) tokens, float64.

    By time (default): seconds * rope_scale, so tokens at the same instant share a position. By
    index (ablation): audio token n -> n, every video token of frame group g -> g.
    """
    if by_index:
        pa = torch.arange(preset.n_audio_tokens, dtype=torch.float64)
        pv = torch.arange(preset.n_frame_groups, dtype=torch.float64)
        return pa, pv.repeat_interleave(preset.video.tokens_per_frame_group)
    scale = preset.fusion.rope_scale
    pa = torch.tensor(preset.audio_token_times, dtype=torch.float64) * scale
    pv = torch.tensor(preset.video_token_times, dtype=torch.float64) * scale
    return pa, pv


class FusionStream(nn.Module):
    """One modality's half of a Fusion Block (backbone width C, shared width D).

    motion_dim > 0 (the video half, with FusionConfig.motion): step 2 also adds this block's
    motion term (`Fusion.motion_terms`, fusion_motion.py); context_dim > 0: that term includes a
    read of MotionContext's features.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        heads: int,
        *,
        mlp_ratio: float,
        motion_dim: int = 0,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.width, self.heads = dim, width, heads
        # the block's read of MotionContext's features (FusionConfig.motion_context); starts at 0
        self.context = nn.Linear(context_dim, width, bias=False) if context_dim else None
        self.motion = motion_mlp(motion_dim, width) if motion_dim else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim + 3 * width))
        self.proj_in = nn.Linear(dim, width)
        self.attn = SelfAttention(width, heads)  # qkv, q/k norms and the output projection
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, round(width * mlp_ratio), out_dim=dim)

    def modulations(self, c: Tensor) -> tuple[Tensor, ...]:
        """c (B, C) -> shift1, scale1 (B, C); gate1, shift2, scale2 (B, D); gate2 (B, C)."""
        return self.adaLN(c).split(
            [self.dim, self.dim, self.width, self.width, self.width, self.dim], dim=-1
        )

    def enter(self, x: Tensor, mods: tuple[Tensor, ...], motion: Tensor | None = None) -> Tensor:
        """Steps 1-2: x (B, N, C) [, this block's motion term (B, N, D) from
        `Fusion.motion_terms`] -> h (B, N, D), which `attn` turns into q, k, v."""
        shift1, scale1 = mods[0], mods[1]
        h = self.proj_in(modulate(self.norm1(x), shift1, scale1))  # (B, N, D)
        if self.motion is not None:
            if motion is None:
                raise ValueError("this Fusion Block reads motion features: pass motion_v")
            h = h + motion
        return h

    def leave(self, x: Tensor, h: Tensor, o: Tensor, mods: tuple[Tensor, ...]) -> Tensor:
        """Steps 5-9: attention output o (B, N, D) -> updated stream x (B, N, C)."""
        gate1, shift2, scale2, gate2 = mods[2:]
        h = h + gate1[:, None] * self.attn.proj(o)  # (B, N, D)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(h), shift2, scale2))  # (B, N, C)


class FusionBlock(nn.Module):
    """Joint, temporally aligned self-attention between the audio and video streams."""

    def __init__(
        self,
        cfg: FusionConfig,
        *,
        audio_dim: int,
        video_dim: int,
        motion_dim: int = 0,
        context_dim: int = 0,
    ) -> None:
        super().__init__()
        self.audio = FusionStream(audio_dim, cfg.width, cfg.heads, mlp_ratio=cfg.mlp_ratio)
        self.video = FusionStream(
            video_dim,
            cfg.width,
            cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            motion_dim=motion_dim,
            context_dim=context_dim,
        )

    def joint_attention_fused(self, h_a: Tensor, h_v: Tensor, pe: Tensor) -> Tensor | None:
        """GPU inference: the joint attention with each stream's q/k norm and RoPE written
        straight into the joint (audio ; video) buffer by one kernel (kernels.py), in place of
        the concatenation -> (B, N_a + N_v, D); None where that kernel cannot run."""
        if not (self.audio.attn.can_fuse(h_a, pe) and self.video.attn.can_fuse(h_v, pe)):
            return None
        b, n_a, width = h_a.shape
        heads = self.audio.attn.heads
        qk = h_a.new_empty(2, b, n_a + h_v.shape[1], heads, width // heads)
        v_a = self.audio.attn.rotated_into(h_a, pe, qk, offset=0)
        v_v = self.video.attn.rotated_into(h_v, pe, qk, offset=n_a)
        q, k = qk.transpose(2, 3)  # (B, H, N_a + N_v, d) views of token-major q and k
        return attention(q, k, torch.cat([v_a, v_v], dim=1).transpose(1, 2))

    def forward(
        self,
        x_a: Tensor,
        x_v: Tensor,
        c_a: Tensor,
        c_v: Tensor,
        pe: Tensor,
        *,
        update_a: bool = True,
        update_v: bool = True,
        motion_v: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """x_a (B, N_a, C_a), x_v (B, N_v, C_v), c_a (B, C_a) from t_a, c_v (B, C_v) from t_v,
        pe (N_a + N_v, D / H / 2, 2) from `rope` over [audio ; video] positions -> (x_a, x_v).

        update_a / update_v False leaves that stream as it came in (no reinjection); its half of
        steps 5-9 is skipped. motion_v (B, N_v, D): this block's term of `Fusion.motion_terms`,
        when the blocks read motion (FusionConfig.motion).
        """
        n_a = x_a.shape[1]
        mods_a, mods_v = self.audio.modulations(c_a), self.video.modulations(c_v)
        h_a, h_v = self.audio.enter(x_a, mods_a), self.video.enter(x_v, mods_v, motion_v)
        o = self.joint_attention_fused(h_a, h_v, pe)
        if o is None:
            q_a, k_a, v_a = self.audio.attn.heads_of(h_a)
            q_v, k_v, v_v = self.video.attn.heads_of(h_v)
            q, k, v = (
                torch.cat(pair, dim=2) for pair in ((q_a, q_v), (k_a, k_v), (v_a, v_v))
            )  # (B, H, N_a + N_v, d)
            o = attention(q, k, v, pe=pe)  # (B, N_a + N_v, D)
        o_a, o_v = o.split([n_a, x_v.shape[1]], dim=1)  # (B, N_a, D), (B, N_v, D)
        if update_a:
            x_a = self.audio.leave(x_a, h_a, o_a, mods_a)
        if update_v:
            x_v = self.video.leave(x_v, h_v, o_v, mods_v)
        return x_a, x_v


class Fusion(nn.Module):
    """The N Fusion Blocks of one AV-Link model (the only trainable part of the last stage)."""

    def __init__(
        self,
        cfg: FusionConfig,
        *,
        audio_dim: int,
        video_dim: int,
        video_token_dim: int = 0,
        video_per_frame: int = 0,
        video_grid: tuple[int, ...] = (),
    ) -> None:
        """video_token_dim, video_per_frame: size of a video token and tokens per frame group,
        needed when cfg.motion is on; video_grid (groups, h, w): the video token grid, needed
        with cfg.motion_context."""
        super().__init__()
        if cfg.motion and (video_per_frame < 1 or video_token_dim < 1):
            raise ValueError("FusionConfig.motion needs video_token_dim and video_per_frame")
        if cfg.motion_context and not (cfg.motion and video_grid):
            raise ValueError("FusionConfig.motion_context needs motion on and the video grid")
        self.cfg, self.video_per_frame = cfg, video_per_frame
        motion_dim = 2 * video_token_dim if cfg.motion else 0
        self.context = (
            MotionContext(video_token_dim, cfg, video_grid) if cfg.motion_context else None
        )
        self.blocks = nn.ModuleList(
            FusionBlock(
                cfg,
                audio_dim=audio_dim,
                video_dim=video_dim,
                motion_dim=motion_dim,
                context_dim=cfg.motion_context,
            )
            for _ in range(cfg.blocks)
        )
        self.init_weights()

    @classmethod
    def for_preset(cls, preset: Preset, cfg: FusionConfig | None = None) -> Fusion:
        """A fresh Fusion sized for the preset's backbones and video tokens (cfg: the preset's
        own FusionConfig unless given)."""
        return cls(
            preset.fusion if cfg is None else cfg,
            audio_dim=preset.audio_dit.width,
            video_dim=preset.video_dit.width,
            video_token_dim=preset.video.token_dim,
            video_per_frame=preset.video.tokens_per_frame_group,
            video_grid=(preset.n_frame_groups, *preset.video.grid_hw),
        )

    def init_weights(self) -> None:
        if not init_standard(self):
            return
        for block in self.blocks:
            for stream in (block.audio, block.video):
                ada = stream.adaLN[-1]
                nn.init.zeros_(ada.weight)  # modulations start constant: shifts/scales 0, gates 1
                nn.init.zeros_(ada.bias)
                c, d = stream.dim, stream.width
                nn.init.ones_(ada.bias[2 * c : 2 * c + d])  # gate1
                nn.init.ones_(ada.bias[-c:])  # gate2
                nn.init.zeros_(stream.mlp.fc2.weight)  # the block's output starts at exactly 0
                nn.init.zeros_(stream.mlp.fc2.bias)
                if stream.context is not None:  # a new context read changes nothing at first
                    nn.init.zeros_(stream.context.weight)

    def motion_terms(
        self, video_tokens: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, ...] | None:
        """Each block's motion term (B, N_v, D) of the video tokens (B, N_v, token_dim), or None
        without FusionConfig.motion; `context`: MotionContext's features when the caller has
        them (fusion_motion.motion_terms)."""
        if not self.cfg.motion:
            return None
        return fusion_motion.motion_terms(
            [block.video for block in self.blocks],
            video_tokens,
            per_frame=self.video_per_frame,
            dtype=self.dtype,
            context=self.context,
            features=context,
        )

    def context_features(self, video_tokens: Tensor) -> Tensor | None:
        """MotionContext's features of the video tokens (B, N_v, W), or None without it."""
        if self.context is None:
            return None
        return fusion_motion.context_features(
            self.context, video_tokens, per_frame=self.video_per_frame, dtype=self.dtype
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0].video.proj_in.weight.dtype

    def rope(self, pos: Tensor) -> Tensor:
        """Positions (N_a + N_v,) -> RoPE table (N_a + N_v, D / H / 2, 2)."""
        return rope(pos, self.cfg.width // self.cfg.heads, theta=self.cfg.rope_theta)
