"""An AVSynth scene: backdrop, floor, actors and their sounds, all drawn from one generator.

``build_scene`` makes every random choice up front; ``Scene.frames`` and ``Scene.audio`` are
then pure. Time convention: frame k is the scene at t = k / fps; audio sample n is at
t = n / sample_rate; an event's one-shot starts at sample n = time * sample_rate exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avlink_cli.synth.contacts import Actor, Bounce, Collide, Fall
from avlink_cli.synth.render import FLOORS, Canvas, background, floor_layer
from avlink_cli.synth.silent import FREE, SLOTTED
from avlink_cli.synth.sounds import ambience, mix, speed_gain
from avlink_cli.synth.stage import EDGE_S, MIN_GAP_S, Event, Stage
from avlink_cli.synth.strikes import Clap, Close, Strike

SOUNDING: dict[str, type] = {
    "bounce": Bounce,
    "fall": Fall,
    "strike": Strike,
    "collide": Collide,
    "close": Close,
    "clap": Clap,
}
KIND_WEIGHTS = np.array([0.24, 0.14, 0.2, 0.12, 0.13, 0.17])
# Speed (units/s) of a hard hit per kind: louder above, quieter below (sounds.speed_gain).
HARD_HIT = {"bounce": 2.5, "fall": 2.8, "strike": 2.7, "collide": 1.0, "close": 3.5, "clap": 2.6}
P_SILENT_CLIP = 0.12  # clips where nothing sounds (some of them with nothing moving at all)
MAX_EVENTS = 8


@dataclass
class Scene:
    """Everything needed to draw and sound one clip."""

    stage: Stage
    static: np.ndarray  # (H, W, 3) backdrop and floor
    background: str
    actors: list[Actor]
    bed: np.ndarray  # (n_samples,) ambience
    bed_info: dict[str, Any]
    # (event, gain, playback rate, index of the actor that sounds it)
    hits: list[tuple[Event, float, float, int]] = field(default_factory=list)

    @property
    def events(self) -> list[Event]:
        return sorted((h[0] for h in self.hits), key=lambda e: e.time)

    def frames(self, n_frames: int, fps: float) -> np.ndarray:
        """(T, H, W, 3) uint8; frame k shows the scene at t = k / fps."""
        h, w = self.static.shape[:2]
        still = Canvas(1, h, w)
        still.fill(self.static)
        for a in self.actors:
            a.draw_static(still)
        cv = Canvas(n_frames, h, w)
        cv.fill(still.img[0])
        t = np.arange(n_frames) / fps
        # Free-floating silent movers go behind, so they never hide a contact.
        behind = [a for a in self.actors if isinstance(a, FREE)]
        for a in behind + [a for a in self.actors if a not in behind]:
            a.draw(cv, t)
        return cv.to_uint8()

    def audio(self) -> tuple[np.ndarray, list[float]]:
        """(n_samples,) float32 mono, ambience plus one one-shot per event; and the final gain
        of each hit in self.hits (raised where needed to be heard, see sounds.mix)."""
        sr = self.stage.sample_rate
        hits = [(round(e.time * sr), e.sound, g, r, k) for e, g, r, k in self.hits]
        return mix(self.bed, hits, sr)

    def caption(self) -> str:
        loud = [a.caption() for a in self.actors if a.sounding]
        quiet = [a.caption() for a in self.actors if not a.sounding]
        if not loud:
            if not quiet:
                return "a quiet, still scene where nothing moves"
            return "nothing makes a sound as " + " and ".join(quiet)
        text = ", and ".join(loud)
        return text + (", while " + " and ".join(quiet) + " silently" if quiet else "")


def build_scene(
    rng: np.random.Generator, *, duration: float, sample_rate: int, height: int, width: int
) -> Scene:
    """Draw a random scene for a clip of the given duration (s), rate (Hz) and size (pixels)."""
    style, pic, colors = background(rng, height, width)
    material = list(FLOORS)[rng.integers(len(FLOORS))]
    top = float(rng.uniform(0.74, 0.88))
    cov, tex, floor_color = floor_layer(rng, material, height, width, top)
    static = pic * (1 - cov[..., None]) + tex * cov[..., None]
    stage = Stage(
        duration,
        sample_rate,
        height,
        width / height,
        top,
        material,
        FLOORS[material],
        avoid=[*colors, floor_color],
    )

    wide = stage.width >= 1.5
    if rng.random() < P_SILENT_CLIP or duration < 2 * EDGE_S + MIN_GAP_S:  # too short to hit
        n_loud = 0
        n_quiet = int(rng.choice([0, 1, 1, 2]))
    else:
        n_loud = int(rng.choice([1, 1, 2, 3] if wide else [1, 1, 1, 2]))
        n_quiet = int(rng.choice([0, 0, 1]))
    quiet_kinds = [(SLOTTED + FREE)[rng.integers(len(SLOTTED) + len(FREE))] for _ in range(n_quiet)]
    slotted = [k for k in quiet_kinds if k in SLOTTED]
    edges = np.linspace(0.0, stage.width, n_loud + len(slotted) + 1)
    slots = [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    order = rng.permutation(len(slots))
    slots = [slots[i] for i in order]

    actors: list[Actor] = []
    taken: list[float] = []
    budget = int(rng.integers(1, MAX_EVENTS + 1))
    for i in range(n_loud):
        left = budget - len(taken)
        if left <= 0:
            break
        share = left if i == n_loud - 1 else int(rng.integers(1, left + 1))
        for _ in range(3):
            used = {a.kind for a in actors}
            p = KIND_WEIGHTS * [k not in used for k in SOUNDING]
            kind = list(SOUNDING)[rng.choice(len(SOUNDING), p=p / p.sum())]
            actor = SOUNDING[kind].sample(rng, stage, slots[i], share, taken)
            if actor is not None:
                actors.append(actor)
                taken += [e.time for e in actor.events()]
                break
    free = iter(slots[n_loud:])
    for cls in quiet_kinds:
        actors.append(cls(rng, stage, next(free) if cls in SLOTTED else (0.0, stage.width)))

    n = round(duration * sample_rate)
    bed, bed_info = ambience(rng, n, sample_rate)
    level = 10 ** (rng.uniform(-6.0, 0.0) / 20)
    hits = []
    for k, a in enumerate(actors):
        rate = float(rng.uniform(0.94, 1.06))
        for e in a.events():
            g = level * speed_gain(e.speed, HARD_HIT[e.kind]) * 10 ** (rng.uniform(-1.5, 1.5) / 20)
            hits.append((e, float(g), rate, k))
    return Scene(stage, static, style, actors, bed, bed_info, hits)
