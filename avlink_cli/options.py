"""The options of a dub/animate run, once: frozen dataclasses that every layer passes along.

`Sampling` is how one window is sampled and how windows are cut and batched (what
`longform.run_jobs` needs); `GenOptions` adds what the files layer needs (samples per input, the
written sound and picture); `ModelOptions` says how to find and run the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .presets import GEN_BATCH


@dataclass(frozen=True)
class Sampling:
    """How clips are sampled; None means the model's own default."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    cfg: float | None = None
    sampler: str = "euler"
    overlap: float = 1.0  # seconds shared by consecutive windows of a long input
    batch_size: int = GEN_BATCH  # clips sampled together on the device


@dataclass(frozen=True)
class GenOptions:
    """Sampling options, and what is written for each input."""

    sampling: Sampling = field(default_factory=Sampling)
    samples: int = 1
    mix_original: float | None = None  # dub only: gain of the input's own soundtrack (mix)
    original_audio: str = "replace"  # dub only: replace | keep | mix (media.sound)
    sample_rate: int | None = None  # dub only: written rate (default 48 kHz video, 16 kHz wav)
    size: tuple[int, int] | None = None  # animate only: (width, height) the video is scaled to
    preview: bool = False  # a PNG beside each output (previews.py)

    @property
    def original(self) -> str:
        """What dub does with an input's own soundtrack; a --mix-original gain means mix."""
        return "mix" if self.mix_original is not None else self.original_audio

    @property
    def mix_gain(self) -> float:
        return 1.0 if self.mix_original is None else self.mix_original


@dataclass(frozen=True)
class ModelOptions:
    """How to find and run the model (shared by every command that loads one)."""

    model: str = "avsynth-s"
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    offline: bool = False
    compile: bool = False  # torch.compile the backbone and Fusion blocks
    cuda_graphs: bool = False  # replay each velocity call as one CUDA graph (CUDA only)
    threads: int | None = None  # CPU threads; None: threads.choose's policy
