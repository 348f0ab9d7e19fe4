"""Codecs: log-mel (bins, frames, normalisation), mel <-> tokens, Griffin-Lim, the neural vocoder
interface, video frames <-> patch tokens."""

import pytest
import torch

from avlink_cli.codecs import (
    GriffinLim,
    NeuralVocoder,
    float_to_frames,
    frames_to_float,
    log_mel,
    mel_to_tokens,
    patchify,
    tokens_to_mel,
    tokens_to_video,
    unpatchify,
    video_to_tokens,
    wav_to_tokens,
)
from avlink_cli.codecs.mel import MEL_FLOOR, mel_center_frequencies, normalize
from avlink_cli.codecs.vocoder import ISTFTHead
from avlink_cli.presets import AudioSpec, VocoderConfig, get_preset

SPEC = AudioSpec()
TINY = get_preset("tiny")


@pytest.mark.parametrize("freq", [440.0, 1000.0, 2500.0, 6000.0])
def test_a_sinusoid_peaks_in_its_mel_bin(freq: float) -> None:
    t = torch.arange(8000) / SPEC.sample_rate
    mel = log_mel(0.5 * torch.sin(2 * torch.pi * freq * t)[None])
    peak = mel[0, :, 5:-5].mean(-1).argmax().item()
    assert peak == (mel_center_frequencies(SPEC) - freq).abs().argmin().item()


def test_frames_normalisation_and_tokens() -> None:
    wav = torch.zeros(2, TINY.n_samples)
    mel = log_mel(wav)
    assert mel.shape == (2, SPEC.n_mels, TINY.n_mel_frames)
    assert torch.allclose(
        mel, torch.full_like(mel, normalize(torch.log(torch.tensor(MEL_FLOOR))).item())
    )
    noisy = log_mel(
        0.1 * torch.randn(1, SPEC.sample_rate, generator=torch.Generator().manual_seed(0))
    )
    assert -3 < noisy.mean() < 3 and noisy.std() < 3  # about unit scale
    tok = wav_to_tokens(0.1 * torch.randn(2, TINY.n_samples))
    assert tok.shape == (2, TINY.n_audio_tokens, TINY.audio.token_dim)


def test_mel_token_round_trip_is_exact() -> None:
    mel = torch.randn(2, 64, 40)
    tok = mel_to_tokens(mel, 4)
    assert tok.shape == (2, 10, 256)
    assert torch.equal(tok[1, 3, 64 * 2 : 64 * 3], mel[1, :, 3 * 4 + 2])  # frame-major layout
    assert torch.equal(tokens_to_mel(tok, 64), mel)
    with pytest.raises(ValueError):
        mel_to_tokens(torch.randn(1, 64, 41), 4)


def test_griffin_lim_round_trip_is_spectrally_close() -> None:
    t = torch.arange(8000) / SPEC.sample_rate
    wav = 0.3 * torch.sin(2 * torch.pi * (300 * t + 2000 * t**2))  # a chirp
    wav[::2000] += 0.7  # and clicks
    mel = log_mel(wav[None])
    out = GriffinLim(n_iter=24)(mel)
    assert out.shape == (1, 8000) and out.abs().max() <= 1
    distance = (log_mel(out) - mel).abs().mean()
    assert distance < 0.25 * (mel - mel.mean()).abs().mean()
    assert torch.equal(GriffinLim(n_iter=2)(mel), GriffinLim(n_iter=2)(mel))  # deterministic


def test_neural_vocoder_interface() -> None:
    torch.manual_seed(0)
    vocoder = NeuralVocoder(TINY.vocoder)
    wav = vocoder(torch.randn(2, 64, 12))
    assert wav.shape == (2, 12 * SPEC.hop) and wav.abs().max() <= 1
    with pytest.raises(ValueError, match="hop"):
        NeuralVocoder(VocoderConfig(n_fft=256))  # shorter than two hops of 160


def test_vocoder_head_inverts_a_true_stft() -> None:
    """Given the log-magnitude and phase of a centred STFT at the mel hop, the head's inverse
    STFT gives back the waveform: frame m is centred on sample m * hop, T frames -> T * hop."""
    n_fft, hop, t = 640, SPEC.hop, 30
    wav = 0.3 * torch.randn(2, t * hop)
    window = torch.hann_window(n_fft)
    x = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)[..., :t]
    head = ISTFTHead(dim=4, n_fft=n_fft, hop=hop)
    head.out = torch.nn.Identity()  # features = the linear layer's output: log-magnitude, phase
    feats = torch.cat([x.abs().clamp(min=1e-12).log(), x.angle()], dim=1).transpose(1, 2)
    assert torch.allclose(head(feats), wav, atol=1e-4)


def test_patchify_round_trip_is_exact() -> None:
    x = torch.randn(2, 6, 8, 12, 3)
    tok = patchify(x, (2, 4, 4))
    assert tok.shape == (2, 3 * 2 * 3, 2 * 4 * 4 * 3)
    assert torch.equal(
        tok[0, 0].view(2, 4, 4, 3), x[0, :2, :4, :4]
    )  # token 0: first patch, (pt, ph, pw, c)
    assert torch.equal(tok[0, 1].view(2, 4, 4, 3), x[0, :2, :4, 4:8])  # then along w
    assert torch.equal(unpatchify(tok, (3, 2, 3), (2, 4, 4)), x)


def test_uint8_video_round_trip_is_exact() -> None:
    frames = torch.randint(
        0, 256, (1, TINY.n_frames, TINY.video.height, TINY.video.width, 3), dtype=torch.uint8
    )
    x = frames_to_float(frames)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(float_to_frames(x), frames)
    tok = video_to_tokens(frames, TINY.video)
    assert tok.shape == (1, TINY.n_video_tokens, TINY.video.token_dim)
    assert torch.equal(tokens_to_video(tok, TINY), frames)
