"""Sounding actors driven by a hand or a hinge: a mallet striking, a lid or door closing, a clap.

Their contacts come in rhythms: the moving part leaves each contact and comes back to the next
one at full speed (stage.swing_offsets), so each contact is the instant the motion reverses.
Units and time as in stage.py; ``gap(t)`` is 0 exactly at each event.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avlink_cli.synth.contacts import Actor
from avlink_cli.synth.render import METALS, PALETTE, SKINS, WOODS, Canvas, contrast, pick_color
from avlink_cli.synth.sounds import sound_for
from avlink_cli.synth.stage import (
    EDGE_S,
    Event,
    Stage,
    ease,
    make_prop,
    swing_offsets,
    swing_speeds,
    times_word,
    with_article,
)


def rhythm(
    rng: np.random.Generator,
    stage: Stage,
    n: int,
    taken: list[float],
    lo: float,
    hi: float,
    tries: int = 30,
) -> np.ndarray | None:
    """n contact times (fewer if n do not fit) on the sample grid, about evenly spaced by lo..hi
    s, clear of taken."""
    for attempt in range(tries):
        k = max(1, n - attempt // 5)
        beat = rng.uniform(lo, hi)
        steps = beat * (1 + rng.uniform(-0.2, 0.2, k - 1))
        span = float(steps.sum())
        if span > stage.duration - 2 * EDGE_S:
            continue
        t0 = rng.uniform(EDGE_S, stage.duration - EDGE_S - span)
        times = [stage.on_grid(t) for t in t0 + np.concatenate([[0.0], np.cumsum(steps)])]
        if stage.clear(times, taken):
            return np.array(times)
    return None


class Strike(Actor):
    """A mallet, stick or rod pivoting about a point, striking a prop on the floor."""

    kind = "strike"
    STRIKERS = {
        "wooden mallet": "wood",
        "rubber mallet": "rubber",
        "metal rod": "metal",
        "drumstick": "wood",
    }

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Strike | None:
        self = cls()
        kinds = ("metal plate", "drum", "wooden block", "floor")
        self.prop = prop = make_prop(rng, stage, slot, kinds[rng.integers(len(kinds))])
        self.name = list(self.STRIKERS)[rng.integers(len(self.STRIKERS))]
        self.material = self.STRIKERS[self.name]
        self.sound = sound_for(rng, self.material, prop.material)
        table = {"wood": WOODS, "metal": METALS, "rubber": PALETTE}[self.material]
        _, self.color = pick_color(rng, table, stage.avoid, min_dist=0.3)
        _, self.handle_color = pick_color(rng, WOODS, stage.avoid, min_dist=0.3)
        self.stick = max(rng.uniform(0.012, 0.02), stage.px(0.7))  # handle half-thickness
        is_stick = self.name in ("drumstick", "metal rod")
        head = self.stick * 1.3 if is_stick else max(rng.uniform(0.035, 0.05), stage.px(1.6))
        self.head = min(head, 0.45 * (prop.x1 - prop.x0))
        self.length = rng.uniform(0.22, 0.34)
        self.phi_c = np.deg2rad(rng.uniform(10, 30))
        self.side = 1.0 if rng.random() < 0.5 else -1.0  # +1: pivot on the left
        hx = rng.uniform(prop.x0 + self.head, prop.x1 - self.head)
        self.py = prop.top - self.head - self.length * np.sin(self.phi_c)
        self.px = hx - self.side * self.length * np.cos(self.phi_c)
        if not (0.02 < self.px < stage.width - 0.02):
            self.side, self.px = -self.side, hx + self.side * self.length * np.cos(self.phi_c)
        c = rhythm(rng, stage, budget, taken, 0.25, 0.7)
        if c is None:
            return None
        self.c = c
        self.amps = np.deg2rad(rng.uniform(25, 60, max(len(c) - 1, 1)))[: len(c) - 1]
        self.pre = (np.deg2rad(rng.uniform(35, 70)), rng.uniform(0.15, 0.35))
        self.post = (np.deg2rad(rng.uniform(20, 50)), rng.uniform(0.15, 0.4))
        return self

    def head_pos(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the striking head (units) at times t."""
        phi = self.phi_c - swing_offsets(t, self.c, self.amps, self.pre, self.post)
        return (
            self.px + self.side * self.length * np.cos(phi),
            self.py + self.length * np.sin(phi),
        )

    def events(self) -> list[Event]:
        speeds = self.length * swing_speeds(self.c, self.amps, self.pre)
        return [
            Event(float(t), self.kind, self.name, self.prop.name, self.sound, float(v))
            for t, v in zip(self.c, speeds, strict=True)
        ]

    def draw_static(self, cv: Canvas) -> None:
        self.prop.draw(cv)

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        hx, hy = self.head_pos(t)
        if self.name in ("drumstick", "metal rod"):
            cv.capsule(self.px, self.py, hx, hy, self.head, self.color)
        else:
            cv.capsule(self.px, self.py, hx, hy, self.stick, self.handle_color)
            cv.disc(hx, hy, self.head, self.color)

    def gap(self, t: np.ndarray) -> np.ndarray:
        return self.prop.top - (self.head_pos(t)[1] + self.head)

    def caption(self) -> str:
        n, what = times_word(len(self.c)), with_article(self.prop.name)
        return f"{with_article(self.name)} strikes {what} {n}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": self.prop.name, "sound": self.sound}


class Close(Actor):
    """A hinged panel swinging shut: a lid onto a box, or a cupboard door against its frame.

    Between closings the panel opens slowly (silent), holds, then falls shut accelerating, so
    it is fastest at the contact. Angle theta(t) >= 0 is how far open it is.
    """

    kind = "close"

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Close | None:
        self = cls()
        a, b = slot
        self.door = rng.random() < 0.5
        mat = "wood" if self.door or rng.random() < 0.6 else "metal"
        table = WOODS if mat == "wood" else METALS
        _, self.body_color = pick_color(rng, table, stage.avoid, min_dist=0.3)
        _, self.color = pick_color(rng, PALETTE, [*stage.avoid, self.body_color], min_dist=0.45)
        self.th = max(rng.uniform(0.035, 0.05), stage.px(1.6 if self.door else 1.3))
        w = min(rng.uniform(0.18, 0.3), 0.7 * (b - a))
        cx = rng.uniform(a + 0.5 * w + 0.05, b - 0.5 * w - 0.05) if b - a > w + 0.1 else (a + b) / 2
        fl = stage.floor_top
        right = rng.random() < 0.5  # door on the right face / lid hinged on the right
        if self.door:
            hgt = rng.uniform(0.3, 0.45)
            feet = 0.04
            self.body = (cx - w / 2, fl - feet - hgt, cx + w / 2, fl - feet)
            hx = cx + w / 2 if right else cx - w / 2
            self.hinge = (hx, fl - feet)
            self.length = hgt * 0.95
            self.a_c, self.sigma = -np.pi / 2, (1.0 if right else -1.0)
            self.theta_max = (40, 70)
            self.name, key = "cupboard door", ("door", "wood")
            self.feet = feet
        else:
            hgt = rng.uniform(0.1, 0.2)
            self.body = (cx - w / 2, fl - hgt, cx + w / 2, fl)
            self.hinge = (cx + w / 2 if right else cx - w / 2, fl - hgt)
            self.length = w
            self.a_c, self.sigma = (np.pi, 1.0) if right else (0.0, -1.0)
            self.theta_max = (45, 100)
            self.name = f"lid of a {'wooden' if mat == 'wood' else 'metal'} box"
            key = ("lid", mat)
            self.feet = 0.0
        self.surface = "cupboard" if self.door else self.name.split(" of a ")[1]
        self.sound = sound_for(rng, *key)
        c = rhythm(rng, stage, min(budget, 3), taken, 0.9, 1.6)
        if c is None:
            return None
        self.c = c
        n = len(c)
        self.open = np.deg2rad(rng.uniform(*self.theta_max, n))  # angle before each closing
        self.fall = rng.uniform(0.18, 0.4, n)  # seconds each closing takes
        self.opening = rng.uniform(0.3, 0.5, n)  # seconds each (silent) opening takes
        return self

    def theta(self, t: np.ndarray) -> np.ndarray:
        """How far open (radians) at times t: 0 = shut."""
        t = np.asarray(t, float)
        out = np.zeros_like(t)
        for i, tc in enumerate(self.c):
            start = tc - self.fall[i]
            shut = self.open[i] * (1 - ((t - start) / self.fall[i]) ** 2)
            if i == 0:
                rising = np.ones_like(t)
            else:  # reopen after the previous closing, halfway through the gap
                o0 = self.c[i - 1] + 0.3 * (start - self.c[i - 1])
                rising = ease((t - o0) / min(self.opening[i], start - o0))
            seg = (t < tc) & ((t >= self.c[i - 1]) if i else True)
            out = np.where(seg, np.where(t < start, self.open[i] * rising, shut), out)
        return out

    def _panel(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        ang = self.a_c + self.sigma * self.theta(t)
        ux, uy = np.cos(ang), np.sin(ang)
        nx, ny = -self.sigma * uy, self.sigma * ux  # towards the outside of the closed panel
        hx, hy = self.hinge
        cx = hx + 0.5 * self.length * ux + 0.5 * self.th * nx
        cy = hy + 0.5 * self.length * uy + 0.5 * self.th * ny
        return cx, cy, ang

    def events(self) -> list[Event]:
        speeds = 2 * self.open * self.length / self.fall
        return [
            Event(float(t), self.kind, self.name, self.surface, self.sound, float(v))
            for t, v in zip(self.c, speeds, strict=True)
        ]

    def draw_static(self, cv: Canvas) -> None:
        x0, y0, x1, y1 = self.body
        cv.box(x0, y0, x1, y1, self.body_color)
        if self.door:
            fl = y1 + self.feet
            cv.box(x0 + 0.01, y1, x0 + 0.03, fl, self.body_color * 0.5)
            cv.box(x1 - 0.03, y1, x1 - 0.01, fl, self.body_color * 0.5)

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        cx, cy, ang = self._panel(t)
        cv.rbox(cx, cy, ang, 0.5 * self.length, 0.5 * self.th, self.color)

    def gap(self, t: np.ndarray) -> np.ndarray:
        return self.length * np.sin(np.minimum(self.theta(t), np.pi / 2))

    def caption(self) -> str:
        verb = "slams shut" if self.door else "closes"
        n = len(self.c)
        return f"the {self.name} {verb}" + (f" {times_word(n)}" if n > 1 else "")

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": self.surface, "sound": self.sound}


class Clap(Actor):
    """Two hands on arms, palms facing, clapping: the gap between the palms closes to 0."""

    kind = "clap"

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Clap | None:
        self = cls()
        a, b = slot
        skin = np.asarray(SKINS[rng.integers(len(SKINS))])
        if min(contrast(skin, c) for c in stage.avoid) < 0.3:
            _, skin = pick_color(rng, PALETTE, stage.avoid)
            self.name = "two gloved hands"
        else:
            self.name = "two hands"
        self.color = skin
        _, self.sleeve = pick_color(rng, PALETTE, [*stage.avoid, skin])
        self.palm = max(rng.uniform(0.025, 0.035), stage.px(1.1))  # palm half-thickness
        self.hand = rng.uniform(0.1, 0.16)  # palm + fingers length
        self.reach = min(0.18, 0.4 * (b - a))
        self.x = 0.5 * (a + b) + rng.uniform(-0.1, 0.1) * (b - a)
        self.y = rng.uniform(0.25, stage.floor_top - self.hand - 0.15)  # fingertip height
        self.sound = sound_for(rng, "hand", "hand")
        c = rhythm(rng, stage, budget, taken, 0.28, 0.7)
        if c is None:
            return None
        self.c = c
        wmax = 0.45 * (b - a) - 2 * self.palm
        if wmax < stage.px(1.5):
            return None  # no room to open the hands visibly
        self.amps = rng.uniform(0.4, 1.0, max(len(c) - 1, 1))[: len(c) - 1] * wmax
        self.pre = (rng.uniform(0.5, 1.0) * wmax, rng.uniform(0.15, 0.3))
        self.post = (rng.uniform(0.5, 1.0) * wmax, rng.uniform(0.2, 0.4))
        return self

    def events(self) -> list[Event]:
        speeds = swing_speeds(self.c, self.amps, self.pre)
        return [
            Event(float(t), self.kind, self.name, "hands", self.sound, float(v))
            for t, v in zip(self.c, speeds, strict=True)
        ]

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        half = 0.5 * swing_offsets(t, self.c, self.amps, self.pre, self.post) + self.palm
        wrist = self.y + self.hand
        for s in (-1.0, 1.0):
            x = self.x + s * half
            cv.capsule(
                x + s * 0.005,
                wrist + 0.02,
                x + s * self.reach,
                wrist + 0.2,
                self.palm * 1.3,
                self.sleeve,
            )  # forearm, in a sleeve, down and out to the elbow
            cv.capsule(x, self.y + self.palm, x, wrist, self.palm, self.color)
            cv.capsule(
                x + s * 0.3 * self.palm,
                wrist - 0.3 * self.hand,
                x + s * 1.6 * self.palm,
                wrist - 0.55 * self.hand,
                0.6 * self.palm,
                self.color,
            )  # thumb

    def gap(self, t: np.ndarray) -> np.ndarray:
        return swing_offsets(t, self.c, self.amps, self.pre, self.post)

    def caption(self) -> str:
        return f"{self.name} clap {times_word(len(self.c))}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": "hands", "sound": self.sound}
