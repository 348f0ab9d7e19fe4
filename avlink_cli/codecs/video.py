"""Video frames <-> normalised floats <-> patch tokens.

Frames are uint8 (B, T, H, W, 3) RGB; the model sees floats in [-1, 1] (x / 127.5 - 1), cut into
(pt, ph, pw) patches. Tokens are in row-major (t, h, w) grid order, (B, N_v, pt * ph * pw * 3),
each token's channels laid out (pt, ph, pw, rgb). Token n's timestamp is the time of the first
frame of its frame group (`Preset.video_token_times`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..presets import Preset, VideoSpec


def frames_to_float(frames: Tensor) -> Tensor:
    """uint8 (..., 3) in [0, 255] -> float32 in [-1, 1]."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    return frames.float() / 127.5 - 1


def float_to_frames(x: Tensor) -> Tensor:
    """float in [-1, 1] (clamped) -> uint8 in [0, 255], rounded."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def patchify(x: Tensor, patch: tuple[int, int, int]) -> Tensor:
    """(B, T, H, W, C) -> (B, T/pt * H/ph * W/pw, pt * ph * pw * C), grid order (t, h, w)."""
    b, t, h, w, c = x.shape
    pt, ph, pw = patch
    if t % pt or h % ph or w % pw:
        raise ValueError(f"video {t}x{h}x{w} is not a multiple of patch {patch}")
    x = x.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7)  # (B, T/pt, H/ph, W/pw, pt, ph, pw, C)
    return x.reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw * c)


def unpatchify(
    tokens: Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int], channels: int = 3
) -> Tensor:
    """(B, N, pt * ph * pw * C) with grid (T/pt, H/ph, W/pw) -> (B, T, H, W, C)."""
    b, n, d = tokens.shape
    gt, gh, gw = grid
    pt, ph, pw = patch
    if n != gt * gh * gw or d != pt * ph * pw * channels:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not fit grid {grid} and patch {patch}")
    x = tokens.reshape(b, gt, gh, gw, pt, ph, pw, channels)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # (B, T/pt, pt, H/ph, ph, W/pw, pw, C)
    return x.reshape(b, gt * pt, gh * ph, gw * pw, channels)


def video_to_tokens(frames: Tensor, spec: VideoSpec) -> Tensor:
    """uint8 frames (B, T, H, W, 3) at the spec's size -> tokens (B, N_v, token_dim)."""
    if frames.shape[2:4] != (spec.height, spec.width):
        raise ValueError(
            f"frames are {tuple(frames.shape[2:4])}, the preset wants {(spec.height, spec.width)}"
        )
    return patchify(frames_to_float(frames), spec.patch)


def tokens_to_video(tokens: Tensor, preset: Preset) -> Tensor:
    """Tokens (B, N_v, token_dim) -> uint8 frames (B, n_frames, H, W, 3)."""
    grid = (preset.n_frame_groups, *preset.video.grid_hw)
    return float_to_frames(unpatchify(tokens, grid, preset.video.patch))
