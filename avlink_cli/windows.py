"""Where the windows of a long input start: a plan that needs no model, so that `--overlap` can be
checked against a model's window before the model is loaded.

Windows start on a grid of q seconds, the shortest span holding whole numbers of video frame
groups and audio tokens (1 s for every preset), every `window - overlap` seconds; the last window
is pulled back onto the grid so that it ends at most q past the input's end (that bit is padding:
the last frame repeated, or silence). An input no longer than one window is one padded window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .presets import Preset


def time_quantum(preset: Preset) -> Fraction:
    """Shortest time in seconds that holds whole numbers of video frame groups and audio tokens."""
    rates = [
        Fraction(preset.video.tokens_per_second).limit_denominator(10_000),
        Fraction(preset.audio.tokens_per_second).limit_denominator(10_000),
    ]
    g = rates[0]
    for r in rates[1:]:  # gcd of fractions: gcd(a/b, c/d) = gcd(ad, cb) / bd
        g = Fraction(math.gcd(g.numerator * r.denominator, r.numerator * g.denominator)) / (
            g.denominator * r.denominator
        )
    return 1 / g


@dataclass(frozen=True)
class WindowPlan:
    """Where each window of one input starts. Times in seconds; indices by `rate` (per second)."""

    window: Fraction
    starts: tuple[Fraction, ...]
    duration: float

    @classmethod
    def make(cls, preset: Preset, duration: float, *, overlap: float = 1.0) -> WindowPlan:
        """Plan an input of `duration` seconds with `overlap` seconds (rounded up to the grid)."""
        if duration <= 0:
            raise ValueError(f"nothing to generate: input duration is {duration:g} s")
        q = time_quantum(preset)
        window = Fraction(preset.duration).limit_denominator(10_000)
        stride = window_stride(preset, overlap)
        extra = Fraction(duration) - window
        if extra <= 1e-9:
            return cls(window, (Fraction(0),), duration)
        n = 1 + math.ceil(extra / stride - 1e-9)
        last = min((n - 1) * stride, math.ceil(extra / q - 1e-9) * q)
        return cls(window, tuple(k * stride for k in range(n - 1)) + (last,), duration)

    def __len__(self) -> int:
        return len(self.starts)

    def index(self, k: int, rate: float) -> int:
        """Window k's first frame / sample / token at `rate` per second."""
        return round(self.starts[k] * Fraction(rate).limit_denominator(10_000))

    def total(self, rate: float) -> int:
        """Length of the whole output at `rate` per second: the input's own duration."""
        return round(self.duration * rate)


def window_stride(preset: Preset, overlap: float) -> Fraction:
    """Seconds from one window's start to the next's when consecutive windows share `overlap`
    seconds (rounded up to the grid). ValueError when that leaves no stride: the overlap must be
    at most `max_overlap(preset)`."""
    if not math.isfinite(overlap) or overlap < 0:
        raise ValueError(f"overlap {overlap:g} s: must be a finite number of seconds, 0 or more")
    q = time_quantum(preset)
    window = Fraction(preset.duration).limit_denominator(10_000)
    ov = math.ceil(overlap / q - 1e-9) * q if overlap > 0 else Fraction(0)
    if window - ov < q:
        raise ValueError(
            f"overlap {overlap:g} s leaves no stride in {float(window):g} s windows "
            f"(at most {float(max_overlap(preset)):g} s)"
        )
    return window - ov


def max_overlap(preset: Preset) -> Fraction:
    """The longest overlap that leaves a stride: one grid step short of the window."""
    return Fraction(preset.duration).limit_denominator(10_000) - time_quantum(preset)
