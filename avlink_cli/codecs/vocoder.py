"""Vocoders: normalised log-mel (B, n_mels, T) -> waveform (B, T * hop) at the spec's rate.

`GriffinLim` needs no weights and is always there: it inverts the mel filterbank by non-negative
least squares (pseudo-inverse start, multiplicative updates), then recovers a phase with fast
Griffin-Lim (momentum 0.99, deterministic start). `NeuralVocoder` is a small HiFi-GAN-style
generator (transposed-conv upsampling by the hop, multi-receptive-field residual blocks); it is
trained elsewhere and saved as the model folder's `vocoder` component.
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


class ResBlock(nn.Module):
    """Dilated residual convolutions of one kernel size (HiFi-GAN's ResBlock1, no weight norm)."""

    def __init__(self, channels: int, kernel: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, dilation=d, padding=d * (kernel - 1) // 2)
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2) for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
        return x


class NeuralVocoder(nn.Module):
    """HiFi-GAN-lite: conv, then per upsampling rate r a transposed conv (x r, channels halved)
    and the mean of residual blocks of several kernel sizes, then conv and tanh."""

    def __init__(self, cfg: VocoderConfig | None = None, spec: AudioSpec | None = None) -> None:
        super().__init__()
        self.cfg, self.spec = cfg or VocoderConfig(), spec or AudioSpec()
        total = 1
        for r in self.cfg.upsample_rates:
            total *= r
        if total != self.spec.hop:
            raise ValueError(
                f"upsample rates {self.cfg.upsample_rates} multiply to {total}, hop is {self.spec.hop}"
            )
        ch = self.cfg.channels
        self.conv_pre = nn.Conv1d(self.spec.n_mels, ch, 7, padding=3)
        self.ups, self.resblocks = nn.ModuleList(), nn.ModuleList()
        for r in self.cfg.upsample_rates:
            # kernel 2r, padding ceil(r / 2), output padding r % 2: exactly r samples per input sample
            self.ups.append(
                nn.ConvTranspose1d(
                    ch, ch // 2, 2 * r, stride=r, padding=(r + 1) // 2, output_padding=r % 2
                )
            )
            ch //= 2
            self.resblocks.append(
                nn.ModuleList(
                    ResBlock(ch, k, self.cfg.resblock_dilations) for k in self.cfg.resblock_kernels
                )
            )
        self.conv_post = nn.Conv1d(ch, 1, 7, padding=3)
        self.init_weights()

    def init_weights(self) -> None:
        if next(self.parameters()).is_meta:  # built to be loaded: no values to set
            return
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, mel: Tensor) -> Tensor:
        """mel (B, n_mels, T) normalised log-mel -> waveform (B, T * hop) in [-1, 1]."""
        x = self.conv_pre(mel.to(self.conv_pre.weight.dtype))  # (B, C, T)
        for up, blocks in zip(self.ups, self.resblocks, strict=True):
            x = up(F.leaky_relu(x, 0.1))  # (B, C / 2, T * r)
            x = sum(block(x) for block in blocks) / len(blocks)
        return torch.tanh(self.conv_post(F.leaky_relu(x))).squeeze(1)  # (B, T * hop)
