"""AVSynth: procedural audio-visual clips with exactly known contact times.

``render_clip(spec, seed, split)`` is a pure function from sizes and a seed to arrays and a
sidecar; ``write_clip`` and ``synth_split`` (dataset.py) put clips on disk. Time convention:
frame k shows the scene at t = k / fps, audio sample n plays at t = n / sample_rate, and each
event's ``time`` (seconds) is both the physical contact instant and the sample at which its
recorded one-shot starts (events lie on the audio sample grid).

Seeds: clip ``seed`` of ``split`` draws from ``np.random.default_rng([VERSION, base + seed])``
with base 0 (train), 10 000 000 (val) or 20 000 000 (test) and 0 <= seed < 10 000 000, so the
splits never share a scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from avlink_cli.presets import Preset, get_preset

VERSION = 1  # bump when a change alters what a seed renders
SPLIT_BASE = {"train": 0, "val": 10_000_000, "test": 20_000_000}
SEEDS_PER_SPLIT = 10_000_000


@dataclass(frozen=True)
class ClipSpec:
    """Sizes of one clip: seconds, frames per second, pixels, audio samples per second."""

    duration: float
    fps: float
    height: int
    width: int
    sample_rate: int = 16_000

    @classmethod
    def from_preset(cls, preset: Preset | str) -> ClipSpec:
        p = get_preset(preset) if isinstance(preset, str) else preset
        return cls(p.duration, p.video.fps, p.video.height, p.video.width, p.audio.sample_rate)

    @property
    def n_frames(self) -> int:
        return round(self.duration * self.fps)

    @property
    def n_samples(self) -> int:
        return round(self.duration * self.sample_rate)


def as_spec(spec: ClipSpec | Preset | str) -> ClipSpec:
    """A ClipSpec from a ClipSpec, a Preset or a preset name."""
    return spec if isinstance(spec, ClipSpec) else ClipSpec.from_preset(spec)


@dataclass
class Clip:
    """frames (T, H, W, 3) uint8; audio (S,) float32 mono in [-1, 1]; sidecar (JSON-ready)."""

    frames: np.ndarray
    audio: np.ndarray
    sidecar: dict[str, Any]


def global_seed(seed: int, split: str) -> int:
    """The seed a clip is drawn from: disjoint ranges per split."""
    if split not in SPLIT_BASE:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_BASE)}")
    if not 0 <= seed < SEEDS_PER_SPLIT:
        raise ValueError(f"seed {seed} outside 0..{SEEDS_PER_SPLIT - 1}")
    return SPLIT_BASE[split] + int(seed)


def render_clip(spec: ClipSpec | Preset | str, seed: int, split: str = "train") -> Clip:
    """Render clip ``seed`` of ``split`` at the sizes of ``spec``: same inputs, same arrays."""
    from avlink_cli.synth.scenes import build_scene

    spec = as_spec(spec)
    rng = np.random.default_rng([VERSION, global_seed(seed, split)])
    scene = build_scene(
        rng,
        duration=spec.duration,
        sample_rate=spec.sample_rate,
        height=spec.height,
        width=spec.width,
    )
    frames = scene.frames(spec.n_frames, spec.fps)
    audio, gains = scene.audio()
    events = []
    for e, gain in sorted(
        zip([h[0] for h in scene.hits], gains, strict=True), key=lambda eg: eg[0].time
    ):
        events.append(
            {
                "time": e.time,
                "sample": round(e.time * spec.sample_rate),
                "frame": min(round(e.time * spec.fps), spec.n_frames - 1),
                "kind": e.kind,
                "object": e.object,
                "surface": e.surface,
                "sound": e.sound,
                "speed": round(e.speed, 4),
                "gain": round(gain, 4),
            }
        )
    sidecar = {
        "avsynth_version": VERSION,
        "seed": int(seed),
        "split": split,
        "duration": spec.duration,
        "fps": spec.fps,
        "size": [spec.height, spec.width],
        "sample_rate": spec.sample_rate,
        "caption": scene.caption(),
        "events": events,
        "objects": [a.record() for a in scene.actors if a.sounding],
        "silent_motion": [a.record() for a in scene.actors if not a.sounding],
        "background": scene.background,
        "floor": scene.stage.floor_name,
        "ambience": scene.bed_info,
    }
    return Clip(frames, audio, sidecar)


from avlink_cli.synth.dataset import load_clip, synth_split, write_clip  # noqa: E402

__all__ = [
    "SPLIT_BASE",
    "VERSION",
    "Clip",
    "ClipSpec",
    "as_spec",
    "global_seed",
    "load_clip",
    "render_clip",
    "synth_split",
    "write_clip",
]
