"""What each preset is: parameters per component, token counts, durations and rates.

Parameters are counted on the meta device, so describing `paper` allocates no weights.
"""

from __future__ import annotations

from typing import Any

import torch

from .avlink import Ablation, AVLink
from .codecs.vocoder import NeuralVocoder
from .presets import PRESETS, Preset


def count_parameters(preset: Preset, ablation: Ablation | None = None) -> dict[str, int]:
    """Parameters per component (video_dit, audio_dit, text, fusion[, external], vocoder)."""
    with torch.device("meta"):
        model = AVLink(preset, ablation)
        vocoder = NeuralVocoder(preset.vocoder, preset.audio)
    parts = model.components() | {"vocoder": vocoder}
    return {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}


def describe_preset(preset: Preset) -> dict[str, Any]:
    params = count_parameters(preset)
    v, a = preset.video, preset.audio
    return {
        "name": preset.name,
        "description": preset.description,
        "duration_s": preset.duration,
        "parameters": params,
        "parameters_total": sum(params.values()),
        "video": {
            "fps": v.fps,
            "size": [v.height, v.width],
            "patch": list(v.patch),
            "frames": preset.n_frames,
            "tokens": preset.n_video_tokens,
            "token_dim": v.token_dim,
        },
        "audio": {
            "sample_rate": a.sample_rate,
            "n_mels": a.n_mels,
            "hop": a.hop,
            "mel_frames": preset.n_mel_frames,
            "tokens_per_second": a.tokens_per_second,
            "tokens": preset.n_audio_tokens,
            "token_dim": a.token_dim,
        },
        "fusion_blocks": preset.fusion.blocks,
        "t_cond": {"v2a": preset.t_cond_v2a, "a2v": preset.t_cond_a2v},
    }


def describe_presets() -> list[dict[str, Any]]:
    """One dict per registered preset (JSON-serialisable), in registry order."""
    return [describe_preset(p) for p in PRESETS.values()]
