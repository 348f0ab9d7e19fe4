"""Where the windows of a long input start, and how decoded windows are joined again. The plan
needs no model, so that `--overlap` can be checked against a model's window before the model is
loaded.

Windows start on a grid of q seconds, the shortest span holding whole numbers of video frame
groups and audio tokens (1 s for every preset), every `window - overlap` seconds; the last window
is pulled back onto the grid so that it ends at most q past the input's end (that bit is padding:
the last frame repeated, or silence). An input no longer than one window is one padded window.

Joining (`Stitcher`): decoded windows are cross-faded over the overlap, audio with equal-power
(sin/cos) gains, frames linearly; the output is the input's own duration, round(duration * rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

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


def crossfade(tail: np.ndarray, head: np.ndarray, *, equal_power: bool) -> np.ndarray:
    """Fade from `tail` (the earlier window) to `head` over their common length (axis 0)."""
    n = len(tail)
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    w_in, w_out = (np.sin(u * np.pi / 2), np.cos(u * np.pi / 2)) if equal_power else (u, 1 - u)
    shape = (n,) + (1,) * (tail.ndim - 1)
    mixed = tail.astype(np.float32) * w_out.reshape(shape) + head.astype(np.float32) * w_in.reshape(
        shape
    )
    return mixed.round().clip(0, 255).astype(np.uint8) if tail.dtype == np.uint8 else mixed


class Stitcher:
    """Joins decoded windows along axis 0 into one stream of `total` items, writing each part as
    soon as no later window can change it."""

    def __init__(self, total: int, write: Callable[[np.ndarray], None], *, equal_power: bool):
        self.total, self.write, self.equal_power = total, write, equal_power
        self.pos = 0  # items written so far
        self.tail: np.ndarray | None = None  # [pos, pos + len(tail)): to fade with the next window

    def add(self, start: int, chunk: np.ndarray, next_start: int | None) -> None:
        """chunk covers [start, start + len(chunk)); the next window starts at next_start."""
        if start != self.pos:
            raise ValueError(f"window starts at {start}, expected {self.pos}")
        if self.tail is not None and len(self.tail):
            n = min(len(self.tail), len(chunk))
            head = crossfade(self.tail[:n], chunk[:n], equal_power=self.equal_power)
            chunk = np.concatenate([head, chunk[n:]])
        cut = len(chunk) if next_start is None else next_start - start
        body = chunk[: max(0, min(cut, self.total - self.pos))]
        if len(body):
            self.write(body)
        self.pos += len(body)
        self.tail = None if next_start is None else chunk[cut:]


def pad_window(data: np.ndarray, n: int, *, hold: bool) -> np.ndarray:
    """Cut or pad to n items along axis 0: holding the last item (frames) or with zeros (audio)."""
    if len(data) >= n:
        return data[:n]
    pad = [(0, n - len(data))] + [(0, 0)] * (data.ndim - 1)
    return np.pad(data, pad, mode="edge" if hold and len(data) else "constant")
