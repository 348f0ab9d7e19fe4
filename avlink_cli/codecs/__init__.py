"""Codecs between media and tokens: log-mel and vocoders for audio, patches for video."""

from .mel import log_mel, mel_to_tokens, tokens_to_mel, wav_to_tokens
from .video import (
    float_to_frames,
    frames_to_float,
    patchify,
    tokens_to_video,
    unpatchify,
    video_to_tokens,
)
from .vocoder import GriffinLim, NeuralVocoder, Vocoder

__all__ = [
    "GriffinLim",
    "NeuralVocoder",
    "Vocoder",
    "float_to_frames",
    "frames_to_float",
    "log_mel",
    "mel_to_tokens",
    "patchify",
    "tokens_to_mel",
    "tokens_to_video",
    "unpatchify",
    "video_to_tokens",
    "wav_to_tokens",
]
