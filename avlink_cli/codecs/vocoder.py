"""Vocoders: normalised log-mel (B, n_mels, T) -> waveform (B, T * hop) at the spec's rate.

`GriffinLim` needs no weights and is always there: it inverts the mel filterbank by non-negative
least squares (pseudo-inverse start, multiplicative updates), then recovers a phase with fast
Griffin-Lim (momentum 0.99, deterministic start). `NeuralVocoder` follows Vocos (arXiv
2306.00814): ConvNeXt blocks at the mel frame rate, then a head that predicts an STFT
(log-magnitude and phase, hop = the mel hop) and inverts it, so it is cheap to train on a CPU;
it is trained elsewhere and saved as the model folder's `vocoder` component.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..presets import AudioSpec, VocoderConfig
from .mel import mel_filterbank, mel_magnitude, stft


class Vocoder(Protocol):
    """Anything that turns normalised log-mel (B, n_mels, T) into a waveform (B, T * hop)."""

    def __call__(self, mel: Tensor) -> Tensor: ...


def mel_to_linear(mel: Tensor, spec: AudioSpec, *, iters: int = 30) -> Tensor:
    """Normalised log-mel (B, n_mels, T) -> non-negative STFT magnitude (B, n_fft // 2 + 1, T)
    minimising ||fb @ S - M||² (pseudo-inverse start, Lee-Seung multiplicative updates)."""
    fb = mel_filterbank(spec, device=mel.device)  # (n_mels, n_freq)
    target = mel_magnitude(mel)  # (B, n_mels, T)
    s = (torch.linalg.pinv(fb) @ target).clamp(min=1e-6)  # (B, n_freq, T)
    fbt_target, fbt_fb = fb.T @ target, fb.T @ fb
    for _ in range(iters):
        s = s * fbt_target / (fbt_fb @ s + 1e-10)
    return s


class GriffinLim:
    """Weight-free vocoder. Deterministic: the starting phase comes from a fixed seed."""

    def __init__(
        self,
        spec: AudioSpec | None = None,
        *,
        n_iter: int = 32,
        momentum: float = 0.99,
        seed: int = 0,
    ) -> None:
        self.spec, self.n_iter, self.momentum, self.seed = (
            spec or AudioSpec(),
            n_iter,
            momentum,
            seed,
        )

    def __call__(self, mel: Tensor) -> Tensor:
        spec = self.spec
        mag = mel_to_linear(mel.float(), spec)  # (B, n_freq, T)
        mag = torch.cat(
            [mag, mag[..., -1:]], dim=-1
        )  # the centred STFT of T * hop samples has T + 1 frames
        length = mel.shape[-1] * spec.hop
        window = torch.hann_window(spec.n_fft, device=mel.device)

        def istft(x: Tensor) -> Tensor:
            return torch.istft(x, spec.n_fft, spec.hop, window=window, center=True, length=length)

        gen = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(mag.shape, generator=gen).to(mel.device) * (2 * torch.pi)
        angles = torch.polar(torch.ones_like(mag), phase)
        previous = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = stft(istft(mag * angles), spec)
            angles = rebuilt - previous * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        return istft(mag * angles).clamp(-1, 1)  # (B, T * hop)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt-1D block: depthwise conv, LayerNorm, MLP, layer-scaled residual."""

    def __init__(self, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.empty(dim))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))  # (B, T, D)
        h = self.fc2(F.gelu(self.fc1(h)))  # (B, T, D)
        return x + (self.gamma * h).transpose(1, 2)  # (B, D, T)


def overlap_add(frames: Tensor, window: Tensor, hop: int) -> Tensor:
    """Windowed frames (B, n_fft, T) -> (B, (T - 1) * hop + n_fft), divided by the summed
    squared window (the inverse of a windowed STFT)."""
    n_fft, t = frames.shape[1], frames.shape[2]
    size, kernel, stride = (1, (t - 1) * hop + n_fft), (1, n_fft), (1, hop)
    y = F.fold(frames, size, kernel, stride=stride)[:, 0, 0]  # (B, S)
    env = window.square()[None, :, None].expand(1, n_fft, t)  # (1, n_fft, T)
    env = F.fold(env, size, kernel, stride=stride)[:, 0, 0]  # (1, S)
    return y / env.clamp(min=1e-11)


class ISTFTHead(nn.Module):
    """Per frame: log-magnitude and phase of n_fft // 2 + 1 bins; inverse STFT with frame m
    centred on sample m * hop, so T frames give exactly T * hop samples."""

    def __init__(self, dim: int, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.out = nn.Linear(dim, n_fft + 2)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> waveform (B, T * hop)."""
        t = x.shape[1]
        log_mag, phase = self.out(x).float().transpose(1, 2).chunk(2, dim=1)  # (B, F, T) each
        mag = torch.exp(log_mag).clamp(max=1e2)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))  # (B, F, T)
        window = torch.hann_window(self.n_fft, device=x.device)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * window[:, None]  # (B, n_fft, T)
        y = overlap_add(frames, window, self.hop)  # (B, (T - 1) * hop + n_fft)
        start = self.n_fft // 2  # frame 0 is centred on sample 0
        return y[:, start : start + t * self.hop]  # (B, T * hop)


class NeuralVocoder(nn.Module):
    """Vocos: a ConvNeXt-1D backbone at the mel frame rate and an inverse-STFT head (hop = the
    mel hop) that predicts each frame's log-magnitude and phase; nothing runs at sample rate."""

    def __init__(self, cfg: VocoderConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__()
        self.cfg, self.spec = cfg or VocoderConfig(), spec or AudioSpec()
        c = self.cfg
        if c.n_fft % 2 or c.n_fft < 2 * self.spec.hop:
            raise ValueError(
                f"vocoder n_fft {c.n_fft} must be even and at least 2 * hop ({self.spec.hop})"
            )
        self.embed = nn.Conv1d(self.spec.n_mels, c.dim, c.kernel, padding=c.kernel // 2)
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(c.dim, c.hidden, c.kernel) for _ in range(c.layers)
        )
        self.final_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.head = ISTFTHead(c.dim, c.n_fft, self.spec.hop)
        self.init_weights()

    def init_weights(self) -> None:
        if next(self.parameters()).is_meta:  # built to be loaded: no values to set
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ConvNeXtBlock):
                nn.init.constant_(m.gamma, 1 / self.cfg.layers)

    def forward(self, mel: Tensor) -> Tensor:
        """mel (B, n_mels, T) normalised log-mel -> waveform (B, T * hop) in [-1, 1]."""
        x = self.embed(mel.to(self.embed.weight.dtype))  # (B, D, T)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # (B, D, T)
        for block in self.blocks:
            x = block(x)
        x = self.final_norm(x.transpose(1, 2))  # (B, T, D)
        return self.head(x).clamp(-1, 1)  # (B, T * hop)
