"""The stage every AVSynth actor plays on: sizes, floor, props, and the event record.

Units and time: positions in frame heights (y down, see render.py), times in seconds from the
clip start, speeds in frame heights per second. Event times lie on the audio sample grid
(t = n / sample_rate), so the physical contact time and the one-shot's first sample agree
exactly; frame k shows the scene at the instant k / fps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avlink_cli.synth.render import METALS, PALETTE, WOODS, Canvas, Color, pick_color

MIN_GAP_S = 0.15  # no two contacts in a clip closer than this, so every onset stands alone
EDGE_S = 0.12  # no contact closer than this to either end of the clip

COUNT_WORDS = ["no times", "once", "twice", "three times", "four times", "five times"]
COUNT_WORDS += ["six times", "seven times", "eight times"]


def with_article(name: str) -> str:
    """'a red ball', 'an orange ball'."""
    return ("an " if name[:1] in "aeiou" else "a ") + name


def times_word(n: int) -> str:
    return COUNT_WORDS[n] if n < len(COUNT_WORDS) else f"{n} times"


@dataclass(frozen=True)
class Event:
    """One audible contact: at ``time`` s the moving ``object`` hits ``surface``."""

    time: float
    kind: str
    object: str
    surface: str
    sound: str
    speed: float


@dataclass
class Stage:
    """What actors need to know about the clip: sizes, rates, floor and colours to avoid."""

    duration: float
    sample_rate: int
    height_px: int
    width: float  # frame width in units (W / H)
    floor_top: float
    floor_material: str
    floor_name: str
    avoid: list[Color] = field(default_factory=list)

    def px(self, n: float) -> float:
        """n pixels in scene units."""
        return n / self.height_px

    def on_grid(self, t: float) -> float:
        """Time t moved to the nearest audio sample instant."""
        return round(t * self.sample_rate) / self.sample_rate

    def clear(self, times: list[float], taken: list[float]) -> bool:
        """True if the times lie inside the clip and keep MIN_GAP_S from each other and taken."""
        if any(t < EDGE_S or t > self.duration - EDGE_S for t in times):
            return False
        allt = sorted(list(times) + list(taken))
        return all(b - a >= MIN_GAP_S for a, b in zip(allt[:-1], allt[1:], strict=True))


@dataclass
class Prop:
    """A static surface to land on or strike: its top edge spans [x0, x1] at height ``top``."""

    name: str
    material: str
    x0: float
    x1: float
    top: float
    parts: list[tuple[float, float, float, float, Color]] = field(default_factory=list)

    def draw(self, cv: Canvas) -> None:
        for x0, y0, x1, y1, color in self.parts:
            cv.box(x0, y0, x1, y1, color)


PROP_KINDS = ("floor", "metal plate", "drum", "wooden block", "table")


def make_prop(rng: np.random.Generator, stage: Stage, slot: tuple[float, float], kind: str) -> Prop:
    """A prop of ``kind`` standing on the floor, centred in ``slot`` (units)."""
    a, b = slot
    fl, wid = stage.floor_top, b - a
    if kind == "floor":
        return Prop(stage.floor_name, stage.floor_material, a, b, fl)
    cx = 0.5 * (a + b) + rng.uniform(-0.1, 0.1) * wid
    half = rng.uniform(0.3, 0.42) * wid
    x0, x1 = cx - half, cx + half
    if kind == "metal plate":
        th = max(rng.uniform(0.05, 0.08), stage.px(1.8))
        _, c = pick_color(rng, METALS, stage.avoid)
        parts = [(x0, fl - th, x1, fl, c * 0.75), (x0, fl - th, x1, fl - th * 0.5, c)]
        return Prop("metal plate", "metal", x0, x1, fl - th, parts)
    if kind == "drum":
        body = rng.uniform(0.12, 0.2)
        skin = max(0.025, stage.px(1))
        _, c = pick_color(rng, PALETTE, stage.avoid)
        rim = (0.85, 0.85, 0.8)
        parts = [(x0, fl - body, x1, fl, c), (x0, fl - body, x1, fl - body + skin, rim)]
        parts.append((x0, fl - 0.35 * body, x1, fl - 0.3 * body, rim))
        return Prop("drum", "drum", x0, x1, fl - body, parts)
    if kind == "wooden block":
        hgt = rng.uniform(0.08, 0.16)
        _, c = pick_color(rng, WOODS, stage.avoid, min_dist=0.3)
        parts = [(x0, fl - hgt, x1, fl, c), (x0, fl - hgt, x1, fl - hgt + stage.px(1), c * 1.2)]
        return Prop("wooden block", "wood", x0, x1, fl - hgt, parts)
    # table: a wooden top on two legs
    top = fl - rng.uniform(0.2, 0.32)
    th = max(0.035, stage.px(1.5))
    leg = max(0.025, stage.px(1.2))
    _, c = pick_color(rng, WOODS, stage.avoid, min_dist=0.3)
    parts = [(x0, top, x1, top + th, c)]
    parts += [(x0 + 0.02, top, x0 + 0.02 + leg, fl, c * 0.8)]
    parts += [(x1 - 0.02 - leg, top, x1 - 0.02, fl, c * 0.8)]
    return Prop("wooden table", "wood", x0, x1, top, parts)


def thing(
    rng: np.random.Generator,
    stage: Stage,
    material: str,
    shape: str,
    *,
    unlike: Color | None = None,
) -> tuple[str, np.ndarray]:
    """A caption name and colour for an object of material and shape ("ball", "block", ...),
    standing out from the stage (and from the colour ``unlike``: then wood gets its shade)."""
    avoid = stage.avoid + ([] if unlike is None else [unlike])
    if material == "metal":
        name, c = pick_color(rng, METALS, avoid, min_dist=0.3)
        return (f"steel {shape}" if name == "steel" else f"{name} metal {shape}"), c
    if material == "wood":
        name, c = pick_color(rng, WOODS, avoid, min_dist=0.3)
        return (f"{name} wooden {shape}" if unlike is not None else f"wooden {shape}"), c
    name, c = pick_color(rng, PALETTE, avoid)
    return f"{name} {material} {shape}", c


def ease(u: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 step (zero velocity at both ends) of u clipped to [0, 1]."""
    u = np.clip(u, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def swing_offsets(
    t: np.ndarray,
    contacts: np.ndarray,
    amps: np.ndarray,
    pre: tuple[float, float],
    post: tuple[float, float],
) -> np.ndarray:
    """Distance from contact of a striking motion, 0 exactly at each contact time.

    Between contacts i and i+1 the offset is amps[i] * sin(pi * u) (u from 0 to 1): it leaves
    one contact and returns to the next at full speed, as a mallet or a clapping hand does.
    Before the first contact the part rests at pre[0] and swings in over pre[1] seconds; after
    the last it rebounds to post[0] over post[1] seconds and stays there.
    """
    t = np.asarray(t, float)
    out = np.empty_like(t)
    first, last = contacts[0], contacts[-1]
    m = t < first
    out[m] = pre[0] * np.sin(0.5 * np.pi * np.clip((first - t[m]) / pre[1], 0, 1))
    m = t >= last
    out[m] = post[0] * np.sin(0.5 * np.pi * np.clip((t[m] - last) / post[1], 0, 1))
    m = (t >= first) & (t < last)
    i = np.clip(np.searchsorted(contacts, t[m], side="right") - 1, 0, len(contacts) - 2)
    u = (t[m] - contacts[i]) / (contacts[i + 1] - contacts[i])
    out[m] = amps[i] * np.sin(np.pi * u)
    return out


def swing_speeds(contacts: np.ndarray, amps: np.ndarray, pre: tuple[float, float]) -> np.ndarray:
    """Approach speed |d offset / dt| at each contact for swing_offsets (offset units / s)."""
    first = pre[0] * 0.5 * np.pi / pre[1]
    rest = amps * np.pi / np.diff(contacts)
    return np.concatenate([[first], rest])
