"""What the Fusion Blocks' video halves read of motion, beside the paper's design.

Not in AV-Link as published; the shipped avsynth-s has both switches on (docs/ablations.md says
why and what each gained):

- the motion path (FusionConfig.motion): each video token's change from the previous frame and
  to the next (`frame_differences`) through a small MLP per block (`motion_mlp`), added to the
  block's projection of the video stream, so that a token can tell a reversal or a stop (a
  contact) from steady motion by itself;
- `MotionContext` (FusionConfig.motion_context): a small transformer over all the clip's tokens
  and their differences, so a token also sees the motion before and after it. Each block reads
  its features through a linear map that starts at zero. The Fusion stage's contact loss trains
  it as a contact detector (training/stages.py, ContactHead).

The modules live on the Fusion Blocks (`FusionStream.motion`, `FusionStream.context`) and on
`Fusion.context`, so their parameter names are those of the Fusion component.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layers import GridEncoder
from .presets import FusionConfig


def frame_differences(x: Tensor, per_frame: int) -> Tensor:
    """x (B, T * S, C), S tokens a frame in row-major (t, h, w) order -> (B, T * S, 2C): each
    token's difference to the same place in the previous frame and in the next (0 at the ends)."""
    b, n, c = x.shape
    f = x.reshape(b, n // per_frame, per_frame, c)
    d = f[:, 1:] - f[:, :-1]  # (B, T - 1, S, C)
    zero = torch.zeros_like(f[:, :1])
    back, ahead = torch.cat([zero, d], 1), torch.cat([d, zero], 1)
    return torch.cat([back, ahead], -1).reshape(b, n, 2 * c)


def motion_mlp(motion_dim: int, width: int) -> nn.Sequential:
    """One block's motion MLP: frame differences (B, N_v, motion_dim) -> (B, N_v, width). No
    biases, so a still video adds nothing."""
    return nn.Sequential(
        nn.Linear(motion_dim, width, bias=False),
        nn.GELU(),
        nn.Linear(width, width, bias=False),
    )


class MotionContext(nn.Module):
    """A contact detector's view of the video: each video token with its `frame_differences`
    through a `GridEncoder` over all the clip's tokens (grid RoPE).
    tokens (B, N_v, token_dim) -> (B, N_v, width)."""

    def __init__(self, token_dim: int, cfg: FusionConfig, grid: tuple[int, ...]) -> None:
        """token_dim: a video token's size; cfg.motion_context: the width; grid (groups, h, w)."""
        super().__init__()
        width = cfg.motion_context
        self.encoder = GridEncoder(
            token_dim=3 * token_dim,
            dim=width,
            heads=max(1, width // 32),
            depth=cfg.motion_context_depth,
            grid=grid,
        )

    def forward(self, tokens: Tensor, differences: Tensor) -> Tensor:
        """tokens (B, N_v, token_dim) and their `frame_differences` -> (B, N_v, width)."""
        return self.encoder(torch.cat([tokens, differences], -1))


def context_features(
    context: MotionContext, video_tokens: Tensor, *, per_frame: int, dtype: torch.dtype
) -> Tensor:
    """MotionContext's features of the video tokens (B, N_v, token_dim) -> (B, N_v, W)."""
    tokens = video_tokens.to(dtype)
    return context(tokens, frame_differences(tokens, per_frame))


def motion_terms(
    streams: Sequence[nn.Module],
    video_tokens: Tensor,
    *,
    per_frame: int,
    dtype: torch.dtype,
    context: MotionContext | None = None,
    features: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """Each Fusion Block's motion term (B, N_v, D) from its video half (`streams`): the motion
    MLP of the frame differences, plus the block's read of MotionContext's features (`features`
    when the caller has them, else computed here when `context` is given). They depend on the
    video tokens alone, so V2A computes them once per clip."""
    diffs = frame_differences(video_tokens, per_frame).to(dtype)
    terms = tuple(stream.motion(diffs) for stream in streams)
    if context is None:
        return terms
    if features is None:
        features = context(video_tokens.to(dtype), diffs)
    return tuple(m + stream.context(features) for m, stream in zip(terms, streams, strict=True))
