"""The Fusion stage can learn to pass timing from one modality to the other.

A task where timing is everything: each clip has one event at a random time, a white frame in an
otherwise black video and a loud mel token in otherwise silent audio. The audio generator is first
trained alone (it learns "one loud token somewhere"), then the Fusion stage, exactly as `avlink
train fusion` runs it (FusionStage's own time sampling), must learn *where*: at high noise the
V2A loss with each clip's own video must fall below the loss with another clip's video.

This guards the two things that once kept the default model's Fusion Blocks from learning
anything: a doubly zero-gated block (no gradient into the attention) and training t drawn where
the generated side already shows its own timing. Measured with this test's seeds: matched/shuffled
0.960 with FusionStage's t_shift of 4, 0.9995 with t_shift 1 (the old default).
"""

from __future__ import annotations

import torch

from avlink_cli import flow
from avlink_cli.avlink import AVLink
from avlink_cli.codecs import mel_to_tokens, video_to_tokens
from avlink_cli.presets import TINY
from avlink_cli.text import tokenize
from avlink_cli.training.loop import Rand
from avlink_cli.training.stages import FusionStage, GeneratorStage


def event_batch(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    p = TINY
    tau = torch.rand(n, generator=gen) * (p.duration - 0.1) + 0.05  # event time, seconds
    frame = (tau * p.video.fps).long()
    frames = torch.zeros(n, p.n_frames, p.video.height, p.video.width, 3, dtype=torch.uint8)
    frames[torch.arange(n), frame] = 255
    f = p.audio.frames_per_token
    mel = -torch.ones(n, p.audio.n_mels, p.n_audio_tokens * f)  # normalised log-mel: silence
    token = (tau * p.audio.tokens_per_second).long()
    for i in range(n):
        mel[i, :, token[i] * f : (token[i] + 1) * f] = 1.0
    ids, mask = tokenize([""] * n, p.text.max_tokens)
    return {"frames": frames, "mel": mel, "ids": ids, "mask": mask}


def train(stage: torch.nn.Module, params, steps: int, lr: float, gen: torch.Generator) -> None:
    opt = torch.optim.AdamW(params, lr=lr)
    for step in range(steps):
        loss = stage(
            event_batch(16, gen), Rand(0, step, rank=0, local=16, device=torch.device("cpu"))
        )
        opt.zero_grad()
        loss.backward()
        opt.step()


def v2a_loss(model: AVLink, batch: dict[str, torch.Tensor], shuffle: bool) -> float:
    audio = mel_to_tokens(batch["mel"], TINY.audio.frames_per_token)
    video = video_to_tokens(batch["frames"], TINY.video)
    if shuffle:
        video = video.roll(1, 0)
    n = audio.shape[0]
    ctx = model.encode_text([""] * n)
    gen = torch.Generator().manual_seed(3)
    losses = []
    for t in (0.02, 0.05, 0.1):  # where the noisy audio no longer shows its own event
        x0 = torch.randn(audio.shape, generator=gen)
        cache = model.prepare_condition(
            "v2a", video, ctx, noise=torch.randn(video.shape, generator=gen)
        )
        tt = torch.full((n,), t)
        losses.append(
            flow.loss(
                model.velocity("v2a", flow.interpolate(x0, audio, tt), tt, cache, ctx), x0, audio
            )
        )
    return torch.stack(losses).mean().item()


def test_fusion_stage_learns_event_timing():
    torch.manual_seed(0)
    model = AVLink(TINY)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a video backbone that passes its input on (its gates are zero-init)
        for p in model.video_dit.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    train(
        GeneratorStage(model, "audio", p_uncond=1.0),
        model.set_trainable("audio_dit"),
        150,
        3e-3,
        gen,
    )
    fusion = FusionStage(model, ("v2a",))
    train(fusion, model.set_trainable("fusion"), 250, 3e-3, gen)
    model.eval()
    held_out = event_batch(64, torch.Generator().manual_seed(7))
    with torch.no_grad():
        matched, shuffled = v2a_loss(model, held_out, False), v2a_loss(model, held_out, True)
    assert matched < 0.98 * shuffled, (matched, shuffled)
