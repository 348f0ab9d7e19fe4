"""Sounding actors under gravity or momentum: a ball that bounces, a thing that falls, a collision.

Each actor is built from a random generator by ``sample`` (or None when no layout fits the
clip), knows its events, draws itself at any (T,) times, and reports ``gap(t)``: the distance
in units between the parts that touch, exactly 0 at every event time (see stage.py for units).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avlink_cli.synth.render import Canvas
from avlink_cli.synth.sounds import sound_for
from avlink_cli.synth.stage import (
    EDGE_S,
    MIN_GAP_S,
    Event,
    Stage,
    make_prop,
    thing,
    times_word,
    with_article,
)


class Actor:
    """Something in the scene that moves. Sounding actors have events; silent ones have none."""

    kind = ""
    sounding = True
    name = ""

    def events(self) -> list[Event]:
        return []

    def draw_static(self, cv: Canvas) -> None:
        """Draw the parts that never move (props) onto a one-frame canvas."""

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        """Draw the moving parts at times t (s), one per canvas frame."""
        raise NotImplementedError

    def gap(self, t: np.ndarray) -> np.ndarray:
        """Distance (units) between the touching parts at times t; 0 at events, never < 0."""
        return np.full(np.shape(t), np.inf)

    def caption(self) -> str:
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """The sidecar entry for this actor."""
        return {"kind": self.kind, "object": self.name, "sounding": self.sounding}


class Bounce(Actor):
    """A ball dropped onto a surface: parabolic arcs of one gravity g between contacts.

    The flight time shrinks by the restitution e at every bounce. The clip ends either during
    an arc (the next contact is after the end) or once the arcs drop below a pixel (at rest).
    """

    kind = "bounce"

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Bounce | None:
        prop = make_prop(
            rng, stage, slot, ("floor", "floor", "metal plate", "drum", "table")[rng.integers(5)]
        )
        material = ("rubber", "rubber", "metal", "wood", "plastic")[rng.integers(5)]
        r = min(max(rng.uniform(0.05, 0.09), stage.px(2.2)), 0.45 * (prop.x1 - prop.x0))
        self = cls()
        self.prop, self.material, self.r = prop, material, r
        self.name, self.color = thing(rng, stage, material, "ball")
        self.sound = sound_for(rng, material, prop.material)
        room = prop.top - 2 * r - 0.03
        if room < stage.px(2.0):
            return None  # frame too small for a visible bounce
        for _ in range(40):
            plan = bounce_plan(rng, stage, rng.uniform(0.35, 1.0) * room, budget)
            if plan is not None and stage.clear(plan[0], taken):
                times, self.g, self.h0, self.d0, self.d_open, self.rests = plan
                self.c = np.array(times)
                break
        else:
            return None
        x_lo, x_hi = prop.x0 + r, prop.x1 - r
        xa, xb = rng.uniform(x_lo, x_hi, 2)
        span = self.c[-1] - self.c[0]
        self.vx = (xb - xa) / span if span > 0 else rng.uniform(-0.08, 0.08)
        self.x1 = xa
        room_x = (x_hi - xb) if self.vx > 0 else (xb - x_lo)
        self.tau = min(0.5, max(room_x, 0.0) / max(abs(self.vx), 1e-6))
        return self

    def height(self, t: np.ndarray) -> np.ndarray:
        """Height (units) of the ball's bottom above the surface at times t."""
        t = np.asarray(t, float)
        c, g = self.c, self.g
        h = np.zeros_like(t)
        pre = t < c[0]
        s = np.maximum(t[pre] - (c[0] - self.d0 / 2), 0.0)
        h[pre] = self.h0 - g * s**2 / 2
        mid = (t >= c[0]) & (t < c[-1])
        if mid.any():
            i = np.clip(np.searchsorted(c, t[mid], side="right") - 1, 0, len(c) - 2)
            s, d = t[mid] - c[i], c[i + 1] - c[i]
            h[mid] = g * s * (d - s) / 2
        post = t >= c[-1]
        if not self.rests:
            s = t[post] - c[-1]
            h[post] = g * s * (self.d_open - s) / 2
        return np.maximum(h, 0.0)

    def xpos(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, float)
        c0, cn = self.c[0], self.c[-1]
        tt = np.maximum(t, c0 - self.d0 / 2)
        if not self.rests:
            return self.x1 + self.vx * (tt - c0)
        x = self.x1 + self.vx * (np.minimum(tt, cn) - c0)
        roll = 1 - np.exp(-np.maximum(t - cn, 0) / max(self.tau, 1e-6))
        return x + self.vx * self.tau * roll

    def events(self) -> list[Event]:
        d_in = np.concatenate([[self.d0], np.diff(self.c)])
        return [
            Event(float(t), self.kind, self.name, self.prop.name, self.sound, float(self.g * d / 2))
            for t, d in zip(self.c, d_in, strict=True)
        ]

    def draw_static(self, cv: Canvas) -> None:
        self.prop.draw(cv)

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        x, y = self.xpos(t), self.prop.top - self.r - self.height(t)
        cv.disc(x, y, self.r, self.color)
        if self.material in ("metal", "plastic"):
            cv.disc(x - 0.35 * self.r, y - 0.35 * self.r, 0.3 * self.r, 0.5 + 0.5 * self.color)

    def gap(self, t: np.ndarray) -> np.ndarray:
        return self.height(t)

    def caption(self) -> str:
        n, on = times_word(len(self.c)), with_article(self.prop.name)
        return f"{with_article(self.name)} bounces {n} on {on}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": self.prop.name, "sound": self.sound}


class Fall(Actor):
    """Something held still, let go, falling under gravity onto a surface where it stays."""

    kind = "fall"
    SHAPES = (
        ("wood", "block"),
        ("metal", "can"),
        ("rubber", "ball"),
        ("plastic", "box"),
        ("metal", "ball"),
    )

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Fall | None:
        self = cls()
        self.prop = prop = make_prop(
            rng,
            stage,
            slot,
            ("floor", "metal plate", "drum", "table", "wooden block")[rng.integers(5)],
        )
        self.material, self.shape = self.SHAPES[rng.integers(len(self.SHAPES))]
        width = prop.x1 - prop.x0
        hw = min(max(rng.uniform(0.05, 0.1), stage.px(2.2)), 0.45 * width)
        self.hw = hw
        self.hh = hw if self.shape == "ball" else hw * rng.uniform(0.7, 1.5)
        self.name, self.color = thing(rng, stage, self.material, self.shape)
        self.sound = sound_for(rng, self.material, prop.material)
        self.x = rng.uniform(prop.x0 + hw, prop.x1 - hw)
        room = prop.top - 2 * self.hh - 0.03
        if room < stage.px(2.0):
            return None
        self.h = rng.uniform(0.4, 1.0) * room
        self.tf = rng.uniform(0.3, 0.65)
        for _ in range(20):
            tc = stage.on_grid(rng.uniform(EDGE_S, stage.duration - EDGE_S))
            if stage.clear([tc], taken):
                self.tc = tc
                return self
        return None

    def height(self, t: np.ndarray) -> np.ndarray:
        s = np.clip(np.asarray(t, float) - (self.tc - self.tf), 0.0, self.tf)
        return self.h * (1 - (s / self.tf) ** 2)

    def events(self) -> list[Event]:
        speed = 2 * self.h / self.tf  # g * tf with g = 2 h / tf^2
        return [Event(self.tc, self.kind, self.name, self.prop.name, self.sound, speed)]

    def draw_static(self, cv: Canvas) -> None:
        self.prop.draw(cv)

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        y = self.prop.top - self.hh - self.height(t)
        if self.shape == "ball":
            cv.disc(self.x, y, self.hw, self.color)
            return
        cv.box(self.x - self.hw, y - self.hh, self.x + self.hw, y + self.hh, self.color)
        if self.shape == "can":
            band = 0.5 + 0.5 * self.color
            cv.box(self.x - self.hw, y - 0.3 * self.hh, self.x + self.hw, y + 0.1 * self.hh, band)

    def gap(self, t: np.ndarray) -> np.ndarray:
        return self.height(t)

    def caption(self) -> str:
        return f"{with_article(self.name)} falls onto {with_article(self.prop.name)}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": self.prop.name, "sound": self.sound}


class Collide(Actor):
    """Two balls or blocks on the floor: one is rolled into the other, they bounce apart.

    A starts at rest, is pushed up to speed, and meets B (at rest or coming the other way).
    Velocities after the contact follow a 1D collision with restitution e and masses that
    grow with size; friction then brings both to rest inside the slot.
    """

    kind = "collide"

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        stage: Stage,
        slot: tuple[float, float],
        budget: int,
        taken: list[float],
    ) -> Collide | None:
        self = cls()
        a, b = slot
        self.top = stage.floor_top
        self.material = ("rubber", "metal", "wood", "plastic")[rng.integers(4)]
        self.shape = ("ball", "block")[rng.integers(2)]
        self.name, self.color = thing(rng, stage, self.material, self.shape)
        self.other, self.color_b = thing(rng, stage, self.material, self.shape, unlike=self.color)
        self.sound = sound_for(rng, self.material, self.material)
        r = max(rng.uniform(0.055, 0.085), stage.px(2.0))
        self.ra = r
        self.rb = r if self.shape == "ball" else r * rng.uniform(0.8, 1.4)
        self.xc = rng.uniform(a + 0.45 * (b - a), b - 0.3 * (b - a))  # contact point
        self.va = rng.uniform(0.3, 0.9)
        self.vb = -rng.uniform(0.0, 0.4) if rng.random() < 0.4 else 0.0
        e = rng.uniform(0.4, 0.9)
        ma, mb = self.ra**2, self.rb**2
        p = ma * self.va + mb * self.vb
        self.va2 = (p - mb * e * (self.va - self.vb)) / (ma + mb)
        self.vb2 = (p + ma * e * (self.va - self.vb)) / (ma + mb)
        room_a = self.xc - self.ra * 2 - a
        room_b = b - self.xc - self.rb * 2
        if min(room_a, room_b) < stage.px(1.0):
            return None
        # One friction time for both, so the faster one never catches up and hits again; A
        # bounds the pair on the left, B on the right.
        self.tau = min(0.6, room_a / max(-self.va2, 1e-9), room_b / max(self.vb2, 1e-9))
        self.run_a = rng.uniform(0.3, 0.8) * room_a  # distance A rolls before contact
        self.run_b = min(abs(self.vb) * self.run_a / self.va, 0.8 * room_b)
        self.ramp = rng.uniform(0.1, 0.25)  # seconds A takes to get up to speed
        for _ in range(20):
            tc = stage.on_grid(rng.uniform(EDGE_S, stage.duration - EDGE_S))
            if stage.clear([tc], taken):
                self.tc = tc
                return self
        return None

    def centres(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x of A's and B's centres (units) at times t."""
        t = np.asarray(t, float)
        s, after = self.tc - t, np.maximum(t - self.tc, 0.0)
        da = np.where(
            s > 0,
            -approach(s, self.va, self.run_a, self.ramp),
            self.va2 * self.tau * (1 - np.exp(-after / self.tau)),
        )
        db = np.where(
            s > 0,
            approach(s, -self.vb, self.run_b, self.ramp),
            self.vb2 * self.tau * (1 - np.exp(-after / self.tau)),
        )
        return self.xc - self.ra + da, self.xc + self.rb + db

    def events(self) -> list[Event]:
        return [
            Event(self.tc, self.kind, self.name, self.other, self.sound, float(self.va - self.vb))
        ]

    def draw(self, cv: Canvas, t: np.ndarray) -> None:
        xa, xb = self.centres(t)
        for x, r, c in ((xa, self.ra, self.color), (xb, self.rb, self.color_b)):
            if self.shape == "ball":
                cv.disc(x, self.top - r, r, c)
            else:
                cv.box(x - r, self.top - 2 * r, x + r, self.top, c)

    def gap(self, t: np.ndarray) -> np.ndarray:
        xa, xb = self.centres(t)
        return (xb - self.rb) - (xa + self.ra)

    def caption(self) -> str:
        verb = "rolls" if self.shape == "ball" else "slides"
        other = f"another {self.other}" if self.other == self.name else with_article(self.other)
        return f"{with_article(self.name)} {verb} into {other}"

    def record(self) -> dict[str, Any]:
        return {**super().record(), "surface": self.other, "sound": self.sound}


def approach(s: np.ndarray, speed: float, run: float, ramp: float) -> np.ndarray:
    """Distance still to go, s seconds before arrival, for a mover that starts at rest ``run``
    units away, speeds up evenly over ``ramp`` seconds to ``speed`` and then cruises."""
    if speed <= 0 or run <= 0:
        return np.zeros_like(s)
    ramp = min(ramp, 2 * run / speed)
    cruise = run / speed - ramp / 2  # seconds at full speed
    q = np.clip(s - cruise, 0.0, ramp)  # seconds of the ramp still ahead of the mover
    d = speed * (np.minimum(s, cruise) + (ramp**2 - (ramp - q) ** 2) / (2 * ramp))
    return np.minimum(np.maximum(d, 0.0), run)


def bounce_plan(
    rng: np.random.Generator, stage: Stage, h0: float, budget: int
) -> tuple[list[float], float, float, float, float, bool] | None:
    """Contact times for a ball let go at rest h0 units above a surface, at most ``budget``.

    Restitution e shrinks each flight time d_k = d1 * e**k; gravity g = 8 h0 / d0**2 makes the
    drop (a half flight of d0 = d1 / e) start at h0. Either the clip ends during a visible arc
    (the next contact falls after the end), or every arc after the last contact is under a
    pixel high and the ball rests. Contacts closer than MIN_GAP_S would be unresolvable and
    are never planned. Returns (contact times on the sample grid, g, h0, d0, flight time after
    the last contact, rests) or None if this draw fits no such plan.
    """
    e, d1 = rng.uniform(0.45, 0.85), rng.uniform(0.3, 1.0)
    d0 = d1 / e
    g = 8 * h0 / d0**2
    d = d1 * e ** np.arange(24)  # flight times after contact 0, 1, ...
    low = np.nonzero(g * d**2 / 8 < stage.px(1.0))[0]
    k_rest = int(low[0]) if len(low) else len(d)  # arcs 0 .. k_rest - 1 are visible
    short = np.nonzero(d < MIN_GAP_S)[0]
    k_gap = int(short[0]) if len(short) else len(d)
    rel = np.concatenate([[0.0], np.cumsum(d)])  # contact k at t1 + rel[k]
    end = stage.duration - EDGE_S
    options = []  # (contacts, t1 low, t1 high, rests)
    for n in range(1, min(budget, k_rest, k_gap) + 1):  # ends mid-arc: contact n after the clip
        options.append((n, max(EDGE_S, stage.duration - rel[n]), end - rel[n - 1], False))
    if k_rest <= k_gap and k_rest + 1 <= budget:
        options.append((k_rest + 1, EDGE_S, end - rel[k_rest], True))
    options = [o for o in options if o[1] < o[2]]
    if not options:
        return None
    most = max(o[0] for o in options)  # favour as many bounces as the budget allows
    options = [o for o in options if o[0] >= most - 1]
    n, lo, hi, rests = options[rng.integers(len(options))]
    t1 = rng.uniform(lo, hi)
    times = [stage.on_grid(t1 + x) for x in rel[:n]]
    return times, g, h0, d0, float(d[n - 1]), rests
