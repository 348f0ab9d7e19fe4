"""The four training stages as loss modules: `forward(batch, rand) -> scalar loss`.

- `VocoderStage`: normalised log-mel of a random waveform crop -> waveform; multi-resolution
  STFT loss (spectral convergence + log magnitude) plus an L1 on the re-computed log-mel.
- `GeneratorStage`: one DiT (audio or video) as a text-conditioned flow-matching generator; the
  prompt is dropped (replaced by the empty prompt) with probability `p_uncond`.
- `FusionStage`: the AV-Link loss with both backbones frozen; every batch trains the directions
  it is given (V2A and A2V on the same clips), conditioning side at the fixed t_cond. With the
  motion path, an optional auxiliary loss (`ContactHead`) asks each block's motion term to
  mark the frames of AVSynth's known contacts. The
  generated side's t is shifted towards noise (t_shift 4: median t 0.2 instead of 0.5): the other
  modality only tells the generator something it cannot read off its own noisy input when that
  input is mostly noise, so at shift 1 most steps carry no cross-modal signal and the Fusion
  Blocks learn none (tests/test_fusion_learning.py: on a timing task, matched/shuffled V2A loss
  0.960 at shift 4, 0.9995 at shift 1).

All randomness comes from `rand` (see loop.Rand), so runs are exact under resume and DDP.
Time convention: t = 0 noise, t = 1 data; x_t = t x1 + (1 - t) x0; target x1 - x0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avlink_cli import flow
from avlink_cli.avlink import AVLink, sides
from avlink_cli.codecs import log_mel, mel_to_tokens, video_to_tokens
from avlink_cli.codecs.vocoder import NeuralVocoder
from avlink_cli.presets import AudioSpec, Preset
from avlink_cli.text import TextContext, tokenize
from avlink_cli.training.loop import Rand

STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))  # (n_fft, hop, win)


def stft_mag(x: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    window = torch.hann_window(win, device=x.device)
    spec = torch.stft(x.float(), n_fft, hop, win, window=window, return_complex=True)
    # sqrt(|X|² + eps), not a clamp: a clamp has no gradient where a fresh vocoder is silent
    return (spec.real.square() + spec.imag.square() + 1e-9).sqrt()  # (B, F, T)


def mrstft_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Multi-resolution STFT distance (waveforms (B, S)): spectral convergence + log-mag L1,
    averaged over resolutions. Lower is better; also the vocoder's evaluation metric."""
    total = pred.new_zeros((), dtype=torch.float32)
    for n_fft, hop, win in STFT_RESOLUTIONS:
        p, t = stft_mag(pred, n_fft, hop, win), stft_mag(target, n_fft, hop, win)
        sc = torch.linalg.norm(t - p, dim=(1, 2)) / torch.linalg.norm(t, dim=(1, 2)).clamp(min=1e-5)
        total = total + sc.mean() + (t.log() - p.log()).abs().mean()
    return total / len(STFT_RESOLUTIONS)


def random_crops(wav: Tensor, length: int, rand: Rand) -> Tensor:
    """(B, S) -> (B, length) crops at random offsets that are multiples of 1 (any sample)."""
    b, s = wav.shape
    if s <= length:
        return nn.functional.pad(wav, (0, length - s))
    start = (rand.uniform() * (s - length)).long()  # (B,)
    idx = start[:, None] + torch.arange(length, device=wav.device)  # (B, length)
    return wav.gather(1, idx)


class VocoderStage(nn.Module):
    def __init__(self, vocoder: NeuralVocoder, spec: AudioSpec, *, segment_frames: int = 48):
        super().__init__()
        self.vocoder, self.spec, self.segment = vocoder, spec, segment_frames * spec.hop

    def forward(self, batch: dict[str, Tensor], rand: Rand) -> Tensor:
        wav = random_crops(batch["wav"], self.segment, rand)  # (B, S_seg)
        mel = log_mel(wav, self.spec)  # (B, n_mels, S_seg / hop)
        pred = self.vocoder(mel)  # (B, S_seg)
        mel_l1 = (log_mel(pred, self.spec) - mel).abs().mean()
        return mrstft_loss(pred, wav) + 0.1 * mel_l1


def drop_prompts(ids: Tensor, mask: Tensor, p: float, rand: Rand) -> tuple[Tensor, Tensor]:
    """Replace each row's prompt by the empty prompt with probability p."""
    null_ids, null_mask = tokenize([""], ids.shape[1])
    drop = (rand.uniform() < p)[:, None]  # (B, 1)
    ids = torch.where(drop, null_ids.to(ids.device), ids)
    mask = torch.where(drop, null_mask.to(mask.device), mask)
    return ids, mask


def logit_normal_t(rand: Rand, shift: float) -> Tensor:
    return flow.shift_time(torch.sigmoid(rand.normal()), shift)


def clean_tokens(preset: Preset, batch: dict[str, Tensor], modality: str) -> Tensor:
    """Data tokens x1 of one modality from a batch: mel (B, n_mels, F) or frames uint8."""
    if modality == "audio":
        return mel_to_tokens(batch["mel"].float(), preset.audio.frames_per_token)  # (B, N_a, D_a)
    return video_to_tokens(batch["frames"], preset.video)  # (B, N_v, D_v)


class GeneratorStage(nn.Module):
    """Trains `model.<modality>_dit` (and the text encoder when `train_text`)."""

    def __init__(
        self, model: AVLink, modality: str, *, p_uncond: float = 0.2, t_shift: float | None = None
    ):
        """t_shift: the noise shift of training times; default the DiT's own (DiTConfig)."""
        super().__init__()
        self.model, self.modality = model, modality
        self.p_uncond = p_uncond
        self.t_shift = model.dit(modality).cfg.t_shift if t_shift is None else t_shift

    def forward(self, batch: dict[str, Tensor], rand: Rand) -> Tensor:
        x1 = clean_tokens(self.model.preset, batch, self.modality)
        ids, mask = drop_prompts(batch["ids"], batch["mask"], self.p_uncond, rand)
        ctx = self.model.text(ids, mask)
        t = logit_normal_t(rand, self.t_shift)  # (B,)
        x0 = rand.normal(*x1.shape[1:])
        v = self.model.dit(self.modality)(flow.interpolate(x0, x1, t), t, ctx)
        return flow.loss(v, x0, x1)


def frame_group_labels(contacts: Tensor, frames_per_group: int) -> Tensor:
    """(B, T) bool contact frames -> (B, T / frames_per_group) float: 1 where a group holds one."""
    b, t = contacts.shape
    return contacts.reshape(b, t // frames_per_group, frames_per_group).any(-1).float()


class ContactHead(nn.Module):
    """Training-only read-out of the motion path (FusionConfig.motion): for each Fusion Block, a
    linear map of its motion term (B, N_v, D) to one logit a token, pooled over a frame group's
    tokens by logsumexp (a contact happens somewhere in the frame) -> (blocks, B, groups).

    Trained against the known contact frames, it makes every block's motion term carry "a
    contact happens here" in a direction the attention can read, rather than leaving the
    flow-matching loss alone to find it (docs/ablations.md: the cue tests). It lives in FusionStage, not in
    the model, so it is never saved with the Fusion Blocks and costs nothing at inference.
    With context_width (FusionConfig.motion_context) it also reads out `MotionContext`, which
    this loss trains as a contact detector.
    """

    def __init__(
        self, blocks: int, width: int, tokens_per_group: int, *, context_width: int = 0
    ) -> None:
        super().__init__()
        self.per_group = tokens_per_group
        self.heads = nn.ModuleList(nn.Linear(width, 1) for _ in range(blocks))
        # MotionContext's detector read-out: a logit a token, averaged over a frame group's tokens
        self.context = nn.Linear(context_width, 1) if context_width else None

    def forward(self, motion: tuple[Tensor, ...]) -> Tensor:
        out = []
        for head, m in zip(self.heads, motion, strict=True):
            logit = head(m.float()).squeeze(-1)  # (B, N_v)
            out.append(logit.unflatten(1, (-1, self.per_group)).logsumexp(-1))  # (B, G)
        return torch.stack(out)

    def context_logits(self, context: Tensor) -> Tensor:
        """MotionContext features (B, N_v, W) -> a contact logit per frame group (B, G)."""
        return self.context(context.float()).squeeze(-1).unflatten(1, (-1, self.per_group)).mean(-1)

    def loss(
        self,
        motion: tuple[Tensor, ...],
        labels: Tensor,
        *,
        pos_weight: float,
        context: Tensor | None = None,
    ) -> Tensor:
        """Mean binary cross-entropy of every block's logits against labels (B, G) in {0, 1},
        plus that of MotionContext's logits when given its features."""
        logits = self(motion)
        weight = torch.tensor(pos_weight, device=logits.device)
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, labels.expand_as(logits), pos_weight=weight
        )
        if context is not None and self.context is not None:
            loss = loss + nn.functional.binary_cross_entropy_with_logits(
                self.context_logits(context), labels, pos_weight=weight
            )
        return loss


def onset_weights(mel: Tensor, frames_per_token: int, alpha: float) -> Tensor:
    """Per audio token loss weights (B, N_a) that stress where sound starts: 1 + alpha * onset
    strength / its clip mean. Onset strength of a mel frame is its spectral flux, the mean over
    bins of the rise of log-mel from the previous frame (rises only); a token takes the largest
    of its frames and of its two neighbours' (an onset's rise spreads over the mel window).

    Why: most of V2A's flow-matching loss is the noise floor and the decay of sounds, which the
    video cannot predict; what it can predict, when a sound starts, is a few tokens a clip. Those
    tokens are where the Fusion's video reading pays off, so they weigh more (README: onset
    weighting)."""
    rise = (mel[:, :, 1:] - mel[:, :, :-1]).clamp(min=0).mean(1)  # (B, F - 1)
    flux = torch.cat([torch.zeros_like(rise[:, :1]), rise], 1)  # (B, F), frame 0 has none
    b, f = flux.shape
    tok = flux.reshape(b, f // frames_per_token, frames_per_token).amax(-1)  # (B, N_a)
    tok = nn.functional.max_pool1d(tok[:, None], 3, stride=1, padding=1)[:, 0]
    return 1 + alpha * tok / tok.mean(1, keepdim=True).clamp(min=1e-6)


def weighted_flow_loss(v: Tensor, x0: Tensor, x1: Tensor, weight: Tensor) -> Tensor:
    """flow.loss with per-token weights (B, N), normalised by their sum (so a weight that is
    the same for every token gives flow.loss)."""
    err = (v.float() - flow.target_velocity(x0, x1).float()).square().mean(-1)  # (B, N)
    return (err * weight).sum() / weight.sum()


class FusionStage(nn.Module):
    """Trains the Fusion Blocks (and external encoders with that ablation); backbones frozen."""

    def __init__(
        self,
        model: AVLink,
        directions: tuple[str, ...] = ("v2a", "a2v"),
        *,
        p_uncond: float = 0.5,
        t_shift: float = 4.0,
        hint_steps: int = 0,
        contact_weight: float = 0.0,
        contact_pos_weight: float = 10.0,
        onset_weight: float = 0.0,
        silent_weight: float = 0.0,
    ):
        """contact_weight > 0 adds `ContactHead`'s loss on the V2A conditioning video, times that
        weight, for clips with known contacts (needs FusionConfig.motion). onset_weight > 0
        weighs V2A's loss per audio token by `onset_weights` with that alpha. silent_weight > 0
        weighs the V2A loss of clips without a single contact (the batch's "contacts", which
        AVSynth lists in full) by 1 + silent_weight."""
        super().__init__()
        self.model, self.directions = model, directions
        self.p_uncond, self.t_shift, self.hint_steps = p_uncond, t_shift, hint_steps
        self.contact_weight, self.contact_pos_weight = contact_weight, contact_pos_weight
        self.onset_weight, self.silent_weight = onset_weight, silent_weight
        self.contact_head = None
        if contact_weight > 0:
            preset = model.preset
            if not preset.fusion.motion:
                raise ValueError("the contact loss reads the motion path: FusionConfig.motion")
            self.contact_head = ContactHead(
                preset.fusion.blocks,
                preset.fusion.width,
                preset.video.tokens_per_frame_group,
                context_width=preset.fusion.motion_context,
            )

    def v2a_weights(self, batch: dict[str, Tensor], x1: Tensor) -> Tensor:
        """Per audio token weights (B, N_a) of the V2A loss: `onset_weights` within each clip,
        times 1 + silent_weight for the clips where nothing sounds."""
        w = torch.ones(x1.shape[:2], device=x1.device)
        if self.onset_weight > 0:
            fpt = self.model.preset.audio.frames_per_token
            w = onset_weights(batch["mel"].float().to(x1.device), fpt, self.onset_weight)
        if self.silent_weight > 0 and "contacts" in batch:
            silent = ~batch["contacts"].to(x1.device).any(1)  # (B,)
            w = w * (1 + self.silent_weight * silent.float())[:, None]
        return w

    def contact_loss(
        self, batch: dict[str, Tensor], motion: tuple[Tensor, ...], context: Tensor | None = None
    ) -> Tensor | None:
        """ContactHead's loss over the clips of the batch that have known contacts (context:
        MotionContext's features of the same video, when the Fusion has one)."""
        if self.contact_head is None or "contacts" not in batch:
            return None
        contacts = batch["contacts"].to(motion[0].device)
        known = contacts.any(1)  # real videos have no known contacts: no label at all
        if not bool(known.any()):
            return None
        labels = frame_group_labels(contacts[known], self.model.preset.video.patch[0])
        return self.contact_head.loss(
            tuple(m[known] for m in motion),
            labels,
            pos_weight=self.contact_pos_weight,
            context=None if context is None else context[known],
        )

    def hint(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """The contact hint: over the first `hint_steps` training steps, V2A's conditioning frames
        nearest a known contact are mixed towards white, from fully white to not at all. The
        Fusion Blocks first learn to take timing from the video where it is obvious, and must then
        find the same instants in the real frames (docs/ablations.md, the contact hint).
        Clips without known contacts (real videos) are unchanged; so is validation."""
        strength = 1.0 - step / self.hint_steps if 0 <= step < self.hint_steps else 0.0
        if not self.training or strength <= 0 or "contacts" not in batch:
            return batch
        frames = batch["frames"].float()  # (B, T, H, W, 3)
        mark = batch["contacts"].to(frames.device)[:, :, None, None, None]  # (B, T, 1, 1, 1)
        frames = torch.where(mark, frames + strength * (255.0 - frames), frames)
        return batch | {"frames": frames.round().to(torch.uint8)}

    def forward(self, batch: dict[str, Tensor], rand: Rand) -> Tensor:
        model = self.model
        ids, mask = drop_prompts(batch["ids"], batch["mask"], self.p_uncond, rand)
        with torch.no_grad():
            ctx: TextContext = model.text(ids, mask)
        losses, aux = [], None
        for direction in self.directions:
            gen, cnd = sides(direction)
            x1 = clean_tokens(model.preset, batch, gen)
            hinted = self.hint(batch, rand.step) if direction == "v2a" else batch
            cond = clean_tokens(model.preset, hinted, cnd)
            t = logit_normal_t(rand, self.t_shift)
            x0 = rand.normal(*x1.shape[1:])
            cond_noise = rand.normal(*cond.shape[1:])
            u = rand.uniform()
            t_cond = (
                u if model.ablation.uniform_t_cond else torch.full_like(u, model.t_cond(direction))
            )
            cache = model.prepare_condition(direction, cond, ctx, t_cond=t_cond, noise=cond_noise)
            v = model.velocity(direction, flow.interpolate(x0, x1, t), t, cache, ctx)
            if direction == "v2a" and self.training and (self.onset_weight or self.silent_weight):
                losses.append(weighted_flow_loss(v, x0, x1, self.v2a_weights(batch, x1)))
            else:
                losses.append(flow.loss(v, x0, x1))
            if direction == "v2a" and self.contact_head is not None and self.training:
                # on the real frames' motion: the hint's white frames would make it trivial
                if hinted is batch and cache.motion is not None:
                    motion, context = cache.motion, cache.context
                else:
                    seen = cache.x_t
                    if hinted is not batch:
                        real = clean_tokens(model.preset, batch, cnd)
                        seen = flow.interpolate(cond_noise, real, cache.t_cond)
                    context = model.fusion.context_features(seen)
                    motion = model.fusion.motion_terms(seen, context)
                aux = self.contact_loss(batch, motion, context)
        loss = torch.stack(losses).mean()
        if aux is not None:
            loss = loss + self.contact_weight * aux
        return loss
