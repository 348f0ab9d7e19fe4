"""Presets: every size and rate of an avlink model, as frozen dataclasses with one registry.

Token counts and per-token timestamps are derived here and nowhere else. Time convention for
timestamps: a token's position is the *start* time, in seconds, of the span it covers (video
frame k -> k / fps; audio token n -> n / tokens_per_second), so an audio token and a video
frame at the same instant share a position (AV-Link, arXiv 2412.15191: temporally aligned RoPE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class AudioSpec:
    """Log-mel representation: 16 kHz mono, 64 bins, hop 160 (100 frames/s), 4 frames a token."""

    sample_rate: int = 16_000
    n_mels: int = 64
    n_fft: int = 1024
    hop: int = 160
    frames_per_token: int = 4
    f_min: float = 0.0
    f_max: float = 8_000.0

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    @property
    def tokens_per_second(self) -> float:
        return self.frame_rate / self.frames_per_token

    @property
    def token_dim(self) -> int:
        return self.n_mels * self.frames_per_token


@dataclass(frozen=True)
class VideoSpec:
    """RGB frames in pixel space, cut into (frames, rows, cols) patches."""

    fps: float
    height: int
    width: int
    patch: tuple[int, int, int] = (1, 4, 4)

    def __post_init__(self) -> None:
        pt, ph, pw = self.patch
        if self.height % ph or self.width % pw:
            raise ValueError(
                f"video size {self.height}x{self.width} is not a multiple of {self.patch}"
            )

    @property
    def token_dim(self) -> int:
        pt, ph, pw = self.patch
        return 3 * pt * ph * pw

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.height // self.patch[1], self.width // self.patch[2]

    @property
    def tokens_per_frame_group(self) -> int:
        h, w = self.grid_hw
        return h * w

    @property
    def tokens_per_second(self) -> float:
        """Temporal token rate (frame groups per second)."""
        return self.fps / self.patch[0]


@dataclass(frozen=True)
class DiTConfig:
    """One generator backbone: adaLN-Zero blocks with self-attention, text cross-attention, MLP."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    # What the head outputs: "v", the velocity x1 - x0 (folders written before this field), or
    # "x", the clean tokens x1, from which the velocity is derived (dit.DiT.velocity_of). A
    # velocity holds the full noise x0; when tokens are wider than the stream (a 16x16x3 video
    # patch is 768 values through 160) the head cannot carry it and v-prediction stays at its
    # noise floor, while the clean tokens are low-dimensional and can be learned (JiT, Li & He,
    # arXiv 2511.13720).
    prediction: str = "v"
    # Noise shift of this generator's flow times (flow.shift_time), in training and in the
    # sampling grid: s > 1 spends more of both near noise. Tokens that repeat across a clip (a
    # still background over 48 frames) are decided at t of a few hundredths, where a uniform
    # grid takes one step; folders written before this field have 1.
    t_shift: float = 1.0
    # The sampling grid's shift when it differs from training's (None: t_shift). An x-prediction
    # Euler step to t = 1 lands on the head's estimate, so a grid shifted far toward noise ends
    # on one coarse denoising step: at 25 steps and shift 6 the last step starts at t = 0.8,
    # and its per-frame residue is flicker (docs/video-generator.md: sampling grids).
    sample_shift: float | None = None

    def __post_init__(self) -> None:
        if self.prediction not in ("v", "x"):
            raise ValueError(f"prediction must be 'v' or 'x', got {self.prediction!r}")
        if not self.t_shift > 0:
            raise ValueError(f"t_shift must be positive, got {self.t_shift}")
        if self.sample_shift is not None and not self.sample_shift > 0:
            raise ValueError(f"sample_shift must be positive, got {self.sample_shift}")

    @property
    def sampling_shift(self) -> float:
        return self.t_shift if self.sample_shift is None else self.sample_shift


@dataclass(frozen=True)
class FusionConfig:
    """N Fusion Blocks of common width D, interleaved evenly through both backbones."""

    blocks: int
    width: int
    heads: int
    mlp_ratio: float = 4.0
    rope_scale: float = 25.0  # RoPE position = seconds * rope_scale (one unit per audio token)
    rope_theta: float = 10_000.0
    external_depth: int = 2  # layers of each external encoder (feature-extractor ablation only)
    # The video half of each block also reads every pixel patch's change from the previous frame
    # and to the next (fusion_motion.py). Not in the paper's design; see docs/ablations.md.
    motion: bool = False
    # With motion on: width of the motion-context encoder, a small transformer over every video
    # token and its frame differences across the whole clip whose output each block also reads
    # (fusion_motion.py, MotionContext); 0: none. Trained with the contact loss as a contact detector.
    motion_context: int = 0
    motion_context_depth: int = 2


@dataclass(frozen=True)
class TextConfig:
    """Small prompt encoder that needs no download (byte-level tokens, a few transformer layers)."""

    width: int
    depth: int
    heads: int
    max_tokens: int = 48
    vocab_size: int = 259  # 256 bytes + pad, bos, eos


@dataclass(frozen=True)
class VocoderConfig:
    """Vocos-style neural vocoder: normalised log-mel (B, n_mels, T) -> waveform (B, T * hop).

    `layers` ConvNeXt blocks of width `dim` (MLP width `hidden`, depthwise kernel `kernel`) at the
    mel frame rate, then an inverse STFT of `n_fft` points (even, at least 2 * hop) at the mel hop.
    The defaults are avsynth-s's.
    """

    dim: int = 192
    hidden: int = 576
    layers: int = 6
    n_fft: int = 640
    kernel: int = 7

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VocoderConfig:
        """Folders written before the Vocos vocoder record HiFi-GAN fields (`channels`, ...):
        those get the defaults (a vocoder.safetensors of theirs then fails strict loading)."""
        if "channels" in d:
            return cls()
        return cls(**d)


@dataclass(frozen=True)
class Preset:
    name: str
    duration: float  # seconds of one clip (the model's window)
    video: VideoSpec
    video_dit: DiTConfig
    audio_dit: DiTConfig
    fusion: FusionConfig
    text: TextConfig
    audio: AudioSpec = field(default_factory=AudioSpec)
    vocoder: VocoderConfig = field(default_factory=VocoderConfig)
    t_cond_v2a: float = 0.96  # flow time the conditioning video is noised to (V2A)
    t_cond_a2v: float = 0.8  # flow time the conditioning audio is noised to (A2V)
    description: str = ""

    # --- audio -----------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return round(self.duration * self.audio.sample_rate)

    @property
    def n_mel_frames(self) -> int:
        return self.n_audio_tokens * self.audio.frames_per_token

    @property
    def n_audio_tokens(self) -> int:
        return round(self.duration * self.audio.tokens_per_second)

    @property
    def audio_token_times(self) -> list[float]:
        """Start time in seconds of each audio token, length n_audio_tokens."""
        return [n / self.audio.tokens_per_second for n in range(self.n_audio_tokens)]

    # --- video -----------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return self.n_frame_groups * self.video.patch[0]

    @property
    def n_frame_groups(self) -> int:
        return round(self.duration * self.video.tokens_per_second)

    @property
    def n_video_tokens(self) -> int:
        return self.n_frame_groups * self.video.tokens_per_frame_group

    @property
    def frame_times(self) -> list[float]:
        """Timestamp in seconds of each frame, length n_frames."""
        return [k / self.video.fps for k in range(self.n_frames)]

    @property
    def video_token_times(self) -> list[float]:
        """Start time in seconds of each video token in (t, h, w) order, length n_video_tokens."""
        per = self.video.tokens_per_frame_group
        return [
            g / self.video.tokens_per_second for g in range(self.n_frame_groups) for _ in range(per)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        d = dict(d)
        video = dict(d.pop("video"))
        video["patch"] = tuple(video["patch"])
        return cls(
            video=VideoSpec(**video),
            audio=AudioSpec(**d.pop("audio")),
            video_dit=DiTConfig(**d.pop("video_dit")),
            audio_dit=DiTConfig(**d.pop("audio_dit")),
            fusion=FusionConfig(**d.pop("fusion")),
            text=TextConfig(**d.pop("text")),
            vocoder=VocoderConfig.from_dict(d.pop("vocoder", {})),
            **d,
        )

    def with_(self, **changes: Any) -> Preset:
        return replace(self, **changes)


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    PRESETS[preset.name] = preset
    return preset


TINY = register(
    Preset(
        name="tiny",
        description="Tests only: about 0.3M parameters, 2-second clips.",
        duration=2.0,
        video=VideoSpec(fps=8.0, height=16, width=16, patch=(1, 8, 8)),
        video_dit=DiTConfig(width=32, depth=4, heads=2),
        audio_dit=DiTConfig(width=32, depth=4, heads=2),
        fusion=FusionConfig(blocks=2, width=32, heads=2),
        text=TextConfig(width=32, depth=1, heads=2, max_tokens=24),
        vocoder=VocoderConfig(dim=32, hidden=64, layers=2),
    )
)

AVSYNTH_S = register(
    Preset(
        name="avsynth-s",
        description="The default: trained on AVSynth, runs on a laptop CPU. 4-second clips.",
        duration=4.0,
        # 16x16 patches: 4 tokens a frame, 192 for a clip; sized so 16 clips dub at over 1
        # clip/s on 2 CPU cores (25 steps with CFG), while 12 fps keeps contacts 83 ms apart
        video=VideoSpec(fps=12.0, height=32, width=32, patch=(1, 16, 16)),
        # x-prediction: 768-value patches through a 160-wide stream (DiTConfig.prediction);
        # noise shift 6: a clip's still background is decided near t = 0.02 (DiTConfig.t_shift)
        # trained at shift 6, sampled at 1.5 (docs/video-generator.md: sampling grids)
        video_dit=DiTConfig(
            width=160, depth=6, heads=5, prediction="x", t_shift=6.0, sample_shift=1.5
        ),
        audio_dit=DiTConfig(width=160, depth=6, heads=5),
        fusion=FusionConfig(blocks=3, width=160, heads=5, motion=True, motion_context=128),
        text=TextConfig(width=128, depth=2, heads=4),
    )
)

PAPER = register(
    Preset(
        name="paper",
        description="The paper's sizes: 576M video DiT, 576M audio DiT, 8 Fusion Blocks (186M).",
        duration=5.0,
        video=VideoSpec(fps=6.0, height=36, width=64, patch=(1, 4, 4)),
        # 24 blocks of width 1024 (the paper: at least 22); MLP ratio tuned to land on 576M
        video_dit=DiTConfig(width=1024, depth=24, heads=16, mlp_ratio=4.25),
        audio_dit=DiTConfig(width=1024, depth=24, heads=16, mlp_ratio=4.25),
        # shared width D = 640 (10 heads of 64) lands the 8 blocks on 186M
        fusion=FusionConfig(blocks=8, width=640, heads=10),
        text=TextConfig(width=1024, depth=2, heads=16),
        vocoder=VocoderConfig(dim=512, hidden=1536, layers=8),  # Vocos' base sizes, 13M
    )
)

DEFAULT_PRESET = AVSYNTH_S.name
GEN_BATCH = 16  # clips dub/animate sample together on the device by default


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
