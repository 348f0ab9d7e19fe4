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

import pytest
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


@pytest.mark.slow
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


def test_contact_hint_fades_out_and_touches_only_known_contacts():
    stage = FusionStage(AVLink(TINY), hint_steps=10).train()
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 200, (2, TINY.n_frames, TINY.video.height, TINY.video.width, 3),
                           generator=gen, dtype=torch.uint8)  # fmt: skip
    contacts = torch.zeros(2, TINY.n_frames, dtype=torch.bool)
    contacts[0, 3] = True  # clip 1 has no known contact (a real video)
    batch = {"frames": frames, "contacts": contacts}
    hinted = stage.hint(batch, 0)["frames"]
    assert (hinted[0, 3] == 255).all()  # fully white at the start
    others = torch.ones(2, TINY.n_frames, dtype=torch.bool)
    others[0, 3] = False
    assert torch.equal(hinted[others], frames[others])
    half = stage.hint(batch, 5)["frames"][0, 3].float()  # half-way: half-way to white
    assert torch.allclose(
        half, frames[0, 3].float() + 0.5 * (255 - frames[0, 3].float()), atol=0.51
    )
    for late in (10, 50):
        assert torch.equal(stage.hint(batch, late)["frames"], frames)
    stage.eval()  # validation sees the real frames
    assert torch.equal(stage.hint(batch, 0)["frames"], frames)
    assert torch.equal(FusionStage(AVLink(TINY)).train().hint(batch, 0)["frames"], frames)


def test_contact_frames_from_cache_events():
    from avlink_cli.training.run import contact_frames

    fps = TINY.video.fps
    marks = contact_frames([[{"time": 2 / fps + 0.01}, {"time": 99.0}], []], TINY)
    assert marks.shape == (2, TINY.n_frames)
    assert marks[0].nonzero()[0].tolist() == [2, TINY.n_frames - 1]  # nearest frame, clamped
    assert not marks[1].any()


def test_frame_group_labels_mark_groups_holding_a_contact():
    from avlink_cli.training.stages import frame_group_labels

    contacts = torch.zeros(1, 6, dtype=torch.bool)
    contacts[0, 3] = True
    assert frame_group_labels(contacts, 1).tolist() == [[0, 0, 0, 1, 0, 0]]
    assert frame_group_labels(contacts, 2).tolist() == [[0, 1, 0]]


@pytest.mark.slow
@pytest.mark.parametrize("context", [0, 16])
def test_contact_loss_teaches_the_motion_path_where_contacts_are(context: int):
    """The auxiliary loss trains (Fusion motion MLPs + head) to mark the contact frames of a
    moving-square video, is left out of the validation loss, and needs the motion path. With
    a motion context (FusionConfig.motion_context) it trains that too, as a contact detector."""
    from dataclasses import replace

    from avlink_cli.training.stages import ContactHead

    motion = TINY.with_(fusion=replace(TINY.fusion, motion=True, motion_context=context))
    with pytest.raises(ValueError, match="motion"):
        FusionStage(AVLink(TINY), contact_weight=1.0)
    torch.manual_seed(0)
    model = AVLink(motion)
    stage = FusionStage(model, ("v2a",), contact_weight=1.0)
    params = model.set_trainable("fusion") + list(stage.contact_head.parameters())
    gen = torch.Generator().manual_seed(0)

    def batch(n: int) -> dict[str, torch.Tensor]:
        """A square that falls, stops at the bottom (the contact), and rises again."""
        b = event_batch(n, gen)
        t_hit = torch.randint(2, motion.n_frames - 2, (n,), generator=gen)
        frames = torch.zeros_like(b["frames"])
        for i in range(n):
            for f in range(motion.n_frames):
                y = min(12, 4 * abs(f - int(t_hit[i])))
                frames[i, f, 12 - y : 16 - y, 4:8] = 255
        contacts = torch.zeros(n, motion.n_frames, dtype=torch.bool)
        contacts[torch.arange(n), t_hit] = True
        return b | {"frames": frames, "contacts": contacts}

    def scores(b: dict[str, torch.Tensor]) -> tuple[float, float]:
        """Contact loss, and the share of (block, clip) whose top frame is the contact, on the
        video noised to t_cond as the Fusion Blocks see it."""
        video = video_to_tokens(b["frames"], motion.video)
        noise = torch.randn(video.shape, generator=torch.Generator().manual_seed(5))
        video = flow.interpolate(noise, video, torch.full((len(video),), model.t_cond("v2a")))
        with torch.no_grad():
            terms = model.fusion.motion_terms(video)
            loss = stage.contact_head.loss(terms, b["contacts"].float(), pos_weight=10.0).item()
            top = stage.contact_head(terms).argmax(-1) == b["contacts"].float().argmax(-1)
            if context:  # the motion context's read-out, scored the same way
                logits = stage.contact_head.context_logits(model.fusion.context_features(video))
                top = torch.cat(
                    [top, (logits.argmax(-1) == b["contacts"].float().argmax(-1))[None]]
                )
        return loss, top.float().mean().item()

    held_out = batch(32)
    before, top1_before = scores(held_out)
    opt = torch.optim.AdamW(params, lr=3e-3)
    for step in range(40):
        loss = stage(batch(16), Rand(0, step, rank=0, local=16, device=torch.device("cpu")))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, top1 = scores(held_out)
    # measured: loss 1.60 -> 1.20, top frame right for 0.5 -> 1.0 of (block, clip)
    assert after < 0.85 * before and top1_before <= 0.6 and top1 >= 0.9, (before, after, top1)
    assert isinstance(stage.contact_head, ContactHead)
    stage.eval()  # validation: the flow loss alone, as without the head
    plain = FusionStage(model, ("v2a",)).eval()

    def rand() -> Rand:
        return Rand(0, 0, rank=0, local=32, device=torch.device("cpu"))

    with torch.no_grad():
        assert stage(held_out, rand()).item() == plain(held_out, rand()).item()
