"""Silent actors: motion that makes no sound, so that a model must tie sound to contact.

A block slides or a ball rolls along the floor, a pendulum swings, a balloon drifts, a ball
bobs above the floor without touching it, a bar spins. None of them touches anything new.
Units and time as in stage.py.
"""

from __future__ import annotations

import numpy as np

from avlink_cli.synth.contacts import Actor
from avlink_cli.synth.render import METALS, PALETTE, Canvas, pick_color
from avlink_cli.synth.stage import Stage, ease, thing, with_article


class Silent(Actor):
    sounding = False

    def record(self) -> dict:
        return {**super().record(), "caption": self.caption()}


class Slide(Silent):
    """A block sliding (or a ball rolling) along the floor in eased legs, stopping between."""

    kind = "slide"

    def __init__(self, rng: np.random.Generator, stage: Stage, slot: tuple[float, float]) -> None:
        a, b = slot
        self.top = stage.floor_top
        self.ball = rng.random() < 0.4
        self.r = min(max(rng.uniform(0.045, 0.08), stage.px(2.0)), 0.45 * (b - a))
        material = ("rubber", "wood", "metal", "plastic")[rng.integers(4)]
        self.name, self.color = thing(rng, stage, material, "ball" if self.ball else "block")
        legs = int(rng.integers(1, 4))
        self.stops = rng.uniform(a + self.r, b - self.r, legs + 1)  # x of the centre at each stop
        bounds = np.sort(rng.uniform(0, stage.duration, 2 * legs))
        self.starts, self.ends = bounds[0::2], bounds[1::2]

    def xpos(self, t: np.ndarray) -> np.ndarray:
        x = np.full(np.shape(t), self.stops[0])
        for i, (t0, t1) in enumerate(zip(self.starts, self.ends, strict=True)):
            x = x + (self.stops[i + 1] - self.stops[i]) * ease((t - t0) / max(t1 - t0, 1e-6))
        return x

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        x = self.xpos(t)
        if self.ball:
            cv.disc(x, self.top - self.r, self.r, self.color)
        else:
            cv.box(x - self.r, self.top - 1.6 * self.r, x + self.r, self.top, self.color)

    def caption(self) -> str:
        return f"{with_article(self.name)} {'rolls' if self.ball else 'slides'} across"


class Swing(Silent):
    """A pendulum hanging from the top of its slot, swinging clear of everything below."""

    kind = "swing"

    def __init__(self, rng: np.random.Generator, stage: Stage, slot: tuple[float, float]) -> None:
        a, b = slot
        self.pivot = (0.5 * (a + b), rng.uniform(0.03, 0.12))
        self.r = max(rng.uniform(0.04, 0.07), stage.px(2.0))
        lowest = stage.floor_top - 0.15 - self.r
        self.length = rng.uniform(0.5, 1.0) * (lowest - self.pivot[1])
        reach = max(0.5 * (b - a) - self.r, 0.01)
        self.amp = min(np.deg2rad(rng.uniform(15, 50)), np.arcsin(min(reach / self.length, 1.0)))
        self.period = rng.uniform(0.9, 2.2)
        self.phase = rng.uniform(0, 2 * np.pi)
        cname, self.color = pick_color(rng, PALETTE if rng.random() < 0.6 else METALS, stage.avoid)
        self.name = f"{cname} pendulum"
        _, self.rod = pick_color(rng, METALS, stage.avoid, min_dist=0.25)

    def bob(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ang = self.amp * np.sin(2 * np.pi * np.asarray(t, float) / self.period + self.phase)
        return (
            self.pivot[0] + self.length * np.sin(ang),
            self.pivot[1] + self.length * np.cos(ang),
        )

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        x, y = self.bob(t)
        cv.capsule(self.pivot[0], self.pivot[1], x, y, max(0.008, cv.scale**-1 * 0.5), self.rod)
        cv.disc(x, y, self.r, self.color)

    def caption(self) -> str:
        return f"{with_article(self.name)} swings"


class Drift(Silent):
    """A balloon on a string drifting slowly across the air above the floor."""

    kind = "drift"

    def __init__(self, rng: np.random.Generator, stage: Stage, slot: tuple[float, float]) -> None:
        self.r = max(rng.uniform(0.05, 0.09), stage.px(2.0))
        self.string = rng.uniform(0.08, 0.14)
        y_hi = max(stage.floor_top - 0.3 - self.string, self.r + 0.05)
        self.p0 = np.array([rng.uniform(0, stage.width), rng.uniform(self.r + 0.02, y_hi)])
        self.p1 = np.array([rng.uniform(0, stage.width), rng.uniform(self.r + 0.02, y_hi)])
        self.wobble = (rng.uniform(0.0, 0.03), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi))
        self.duration = stage.duration
        cname, self.color = pick_color(rng, PALETTE, stage.avoid)
        self.name = f"{cname} balloon"

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        u = np.asarray(t, float) / self.duration
        amp, freq, ph = self.wobble
        x = self.p0[0] + u * (self.p1[0] - self.p0[0])
        y = self.p0[1] + u * (self.p1[1] - self.p0[1]) + amp * np.sin(2 * np.pi * freq * t + ph)
        cv.capsule(x, y + self.r, x + 0.01, y + self.r + self.string, 0.006, self.color * 0.5)
        cv.disc(x, y, self.r, self.color)

    def caption(self) -> str:
        return f"{with_article(self.name)} drifts by"


class Hover(Silent):
    """A ball bobbing up and down above the floor: it comes close but never touches."""

    kind = "hover"

    def __init__(self, rng: np.random.Generator, stage: Stage, slot: tuple[float, float]) -> None:
        a, b = slot
        self.top = stage.floor_top
        self.r = min(max(rng.uniform(0.045, 0.08), stage.px(2.0)), 0.45 * (b - a))
        self.x = rng.uniform(a + self.r, b - self.r)
        self.clearance = max(rng.uniform(0.06, 0.12), stage.px(3.0))  # lowest gap to the floor
        self.amp = rng.uniform(0.08, 0.25)
        self.period = rng.uniform(0.6, 1.6)
        self.phase = rng.uniform(0, 2 * np.pi)
        self.name, self.color = thing(rng, stage, "rubber", "ball")

    def gap(self, t: np.ndarray) -> np.ndarray:
        s = np.sin(2 * np.pi * np.asarray(t, float) / self.period + self.phase)
        return self.clearance + self.amp * (1 + s)

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        cv.disc(self.x, self.top - self.r - self.gap(t), self.r, self.color)

    def caption(self) -> str:
        return f"{with_article(self.name)} bobs above the floor"


class Spin(Silent):
    """A bar spinning about its centre in the air."""

    kind = "spin"

    def __init__(self, rng: np.random.Generator, stage: Stage, slot: tuple[float, float]) -> None:
        self.half = rng.uniform(0.06, 0.12)
        self.w = max(rng.uniform(0.015, 0.03), stage.px(1.0))
        self.c = (
            rng.uniform(self.half, stage.width - self.half),
            rng.uniform(self.half + 0.02, stage.floor_top - self.half - 0.25),
        )
        self.omega = rng.uniform(1.0, 6.0) * (1 if rng.random() < 0.5 else -1)
        self.a0 = rng.uniform(0, np.pi)
        cname, self.color = pick_color(rng, PALETTE, stage.avoid)
        self.name = f"{cname} bar"

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        ang = self.a0 + self.omega * np.asarray(t, float)
        cv.rbox(self.c[0], self.c[1], ang, self.half, self.w, self.color)

    def caption(self) -> str:
        return f"{with_article(self.name)} spins"


SLOTTED = (Slide, Swing, Hover)  # need a slot of their own
FREE = (Drift, Spin)  # move through the air, drawn behind everything that sounds
