"""Waveform <-> normalised log-mel <-> audio tokens, in torch (no torchaudio, no librosa).

Mel: 16 kHz mono, Hann STFT (n_fft 1024, hop 160, centred, zero padding: silence outside the clip), magnitude, a
Slaney-scale area-normalised filterbank (librosa's default), natural log with a floor, then a
fixed affine normalisation so tokens are about unit scale:

    mel = (log(max(M @ |STFT|, 1e-5)) - MEL_MEAN) / MEL_STD

Frame m is centred on sample m * hop (time m / 100 s); a clip of S samples has S // hop frames
(the STFT's extra last frame is dropped). Tokens: token n holds frames 4n .. 4n + 3, laid out
frame-major, token[n, f * n_mels + b] = mel[b, 4n + f]; its timestamp is its first frame's time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..presets import AudioSpec

MEL_FLOOR = 1e-5
MEL_MEAN = -5.0  # fixed: silence (the floor) maps to -2.6, a full-scale hit to about +2.8
MEL_STD = 2.5


def hz_to_mel(f: Tensor) -> Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = torch.as_tensor(f, dtype=torch.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(
        f >= min_log_hz,
        min_log_mel + torch.log(f.clamp(min=1e-10) / min_log_hz) / logstep,
        f / f_sp,
    )


def mel_to_hz(m: Tensor) -> Tensor:
    m = torch.as_tensor(m, dtype=torch.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(
        m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m
    )


def mel_center_frequencies(spec: AudioSpec) -> Tensor:
    """Centre frequency in Hz of each mel bin, (n_mels,)."""
    edges = mel_to_hz(
        torch.linspace(hz_to_mel(spec.f_min).item(), hz_to_mel(spec.f_max).item(), spec.n_mels + 2)
    )
    return edges[1:-1].float()


def mel_filterbank(spec: AudioSpec, *, device: torch.device | str | None = None) -> Tensor:
    """Triangular Slaney filters with area normalisation, (n_mels, n_fft // 2 + 1) float32."""
    n_freq = spec.n_fft // 2 + 1
    freqs = torch.linspace(0, spec.sample_rate / 2, n_freq, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(hz_to_mel(spec.f_min).item(), hz_to_mel(spec.f_max).item(), spec.n_mels + 2)
    )
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1)
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    fb = torch.clamp(torch.minimum(up, down), min=0) * (2.0 / (hi - lo))  # (n_mels, n_freq)
    return fb.float().to(device)


def stft(wav: Tensor, spec: AudioSpec) -> Tensor:
    """wav (B, S) -> complex STFT (B, n_fft // 2 + 1, S // hop + 1), centred frames."""
    window = torch.hann_window(spec.n_fft, device=wav.device, dtype=torch.float32)
    return torch.stft(
        wav.float(),
        spec.n_fft,
        spec.hop,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )


def normalize(log_mel: Tensor) -> Tensor:
    return (log_mel - MEL_MEAN) / MEL_STD


def denormalize(mel: Tensor) -> Tensor:
    return mel * MEL_STD + MEL_MEAN


def mel_magnitude(mel: Tensor) -> Tensor:
    """Normalised log-mel -> linear mel magnitude (the inverse of the log and normalisation)."""
    return torch.exp(denormalize(mel.float()))


def log_mel(wav: Tensor, spec: AudioSpec | None = None) -> Tensor:
    """wav (B, S) float in [-1, 1] -> normalised log-mel (B, n_mels, S // hop)."""
    spec = spec or AudioSpec()
    if wav.dim() == 1:
        wav = wav[None]
    n_frames = wav.shape[-1] // spec.hop
    mag = stft(wav, spec).abs()[..., :n_frames]  # (B, n_freq, T)
    mel = mel_filterbank(spec, device=wav.device) @ mag  # (B, n_mels, T)
    return normalize(torch.log(mel.clamp(min=MEL_FLOOR)))


def mel_to_tokens(mel: Tensor, frames_per_token: int = 4) -> Tensor:
    """(B, n_mels, T) -> (B, T / f, f * n_mels), frame-major within a token."""
    b, n_mels, t = mel.shape
    if t % frames_per_token:
        raise ValueError(f"{t} mel frames is not a multiple of {frames_per_token} frames per token")
    return mel.transpose(1, 2).reshape(b, t // frames_per_token, frames_per_token * n_mels)


def tokens_to_mel(tokens: Tensor, n_mels: int = 64) -> Tensor:
    """(B, N, f * n_mels) -> (B, n_mels, N * f); inverse of `mel_to_tokens`."""
    b, n, d = tokens.shape
    if d % n_mels:
        raise ValueError(f"token width {d} is not a multiple of {n_mels} mel bins")
    return tokens.reshape(b, n * (d // n_mels), n_mels).transpose(1, 2)


def wav_to_tokens(wav: Tensor, spec: AudioSpec | None = None) -> Tensor:
    """wav (B, S) -> audio tokens (B, S // hop // f, f * n_mels); S should be a whole number of
    tokens (n_samples of a preset); trailing frames that do not fill a token are dropped."""
    spec = spec or AudioSpec()
    mel = log_mel(wav, spec)
    usable = mel.shape[-1] - mel.shape[-1] % spec.frames_per_token
    return mel_to_tokens(mel[..., :usable], spec.frames_per_token)
