"""The "extractor features" ablation: a separate encoder of the *clean* conditioning tokens whose
features replace the conditioning backbone's activations as the Fusion Blocks' input
(Ablation.external_features; off in every shipped model)."""

from __future__ import annotations

from torch import nn

from .layers import GridEncoder, init_standard
from .presets import Preset


class ExternalEncoders(nn.Module):
    """One external encoder per conditioning modality: `video` for V2A, `audio` for A2V. Each is a
    `GridEncoder` (linear patch embedding, a few transformer layers with grid RoPE) of the
    backbone's width; tokens (B, N, token_dim) -> (B, N, C)."""

    def __init__(self, preset: Preset) -> None:
        super().__init__()
        depth = preset.fusion.external_depth
        a, v = preset.audio_dit, preset.video_dit
        self.audio = GridEncoder(
            token_dim=preset.audio.token_dim,
            dim=a.width,
            heads=a.heads,
            depth=depth,
            grid=(preset.n_audio_tokens,),
        )
        grid_v = (preset.n_frame_groups, *preset.video.grid_hw)
        self.video = GridEncoder(
            token_dim=preset.video.token_dim, dim=v.width, heads=v.heads, depth=depth, grid=grid_v
        )
        self.init_weights()

    def init_weights(self) -> None:
        init_standard(self)
