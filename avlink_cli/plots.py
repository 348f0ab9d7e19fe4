"""Sync plots drawn with numpy into an RGB array and written as PNG (zlib), no matplotlib.

One picture per clip: stacked panels on a shared time axis (seconds from the clip start),
vertical lines for events, a 3x5 bitmap font (drawn at 2x) for labels, a legend strip below.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# 3x5 glyphs, one octal digit per row (bit 2 = left column).
_FONT = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:-+=/()%_><|?",
        "75557 26227 71747 71317 55711 74717 74757 71122 75757 75717 25755 65656 34443 65556 "
        "74647 74644 34553 55755 72227 11152 55655 44447 57755 65555 25552 65644 25563 65655 "
        "34216 72222 55557 55552 55775 55255 55222 71247 00000 00002 00024 02020 00700 02720 "
        "07070 11244 12221 42224 51245 00007 42124 12421 22222 71302".split(),
        strict=True,
    )
)
SCALE = 2
CHAR_W = 4 * SCALE  # 3 columns + 1 space

BLACK, GREY = (30, 30, 30), (150, 150, 150)
WAVE = (70, 110, 170)
GEN_ONSET = (240, 130, 0)
REF_ONSET = (20, 150, 60)
TRUE_EVENT = (200, 0, 40)
MOTION = (120, 120, 120)
CONTACT = (130, 50, 180)
ATTACK = (150, 70, 0)


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG bytes (8-bit truecolour, no filtering)."""
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


class Canvas:
    """An RGB image with the few drawing operations the plots need; (x, y) from the top left."""

    def __init__(self, height: int, width: int) -> None:
        self.img = np.full((height, width, 3), 255, np.uint8)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: tuple[int, int, int]) -> None:
        h, w, _ = self.img.shape
        self.img[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] = color

    def vline(
        self,
        x: int,
        y0: int,
        y1: int,
        color: tuple[int, int, int],
        *,
        dash: int = 0,
        width: int = 2,
    ) -> None:
        """A vertical line from y0 to y1, dashed when dash > 0 (dash length in pixels)."""
        on = dash or max(1, y1 - y0)
        for y in range(y0, y1, 2 * on):
            self.rect(x - width // 2, y, x - width // 2 + width, min(y1, y + on), color)

    def columns(self, x0: int, lo: np.ndarray, hi: np.ndarray, color: tuple[int, int, int]) -> None:
        """One vertical span [lo[i], hi[i]] per column x0 + i."""
        for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
            self.rect(x0 + i, int(min(a, b)), x0 + i + 1, int(max(a, b)) + 1, color)

    def text(self, x: int, y: int, s: str, color: tuple[int, int, int] = BLACK) -> int:
        """Draw s (upper-cased; unknown characters as '?') at (x, y); returns the end x."""
        for ch in s.upper():
            rows = _FONT.get(ch, _FONT["?"])
            for r, digit in enumerate(rows):
                for c in range(3):
                    if int(digit) >> (2 - c) & 1:
                        px, py = x + c * SCALE, y + r * SCALE
                        self.rect(px, py, px + SCALE, py + SCALE, color)
            x += CHAR_W
        return x


RGB = tuple[int, int, int]


@dataclass
class Marks:
    """Event times in seconds drawn as vertical lines from the top of a panel down ``reach`` of
    its height, dashed with ``dash``-pixel dashes (0: solid)."""

    label: str
    times: np.ndarray
    color: RGB
    dash: int = 0
    reach: float = 1.0


@dataclass
class Curve:
    """Values per video frame at fps, scaled so that the largest fills the panel."""

    label: str
    values: np.ndarray
    fps: float
    color: RGB


@dataclass
class Panel:
    """One horizontal band: a background image (H, W, 3) uint8 spanning [0, image_span] s
    (a spectrogram, a strip of frames), a waveform (samples at sample_rate) and/or curves, and
    marks."""

    label: str
    wave: np.ndarray | None = None
    sample_rate: float = 1.0
    curves: list[Curve] = field(default_factory=list)
    marks: list[Marks] = field(default_factory=list)
    height: int = 120
    image: np.ndarray | None = None
    image_span: float = 0.0


def spectrogram(wav: np.ndarray, sample_rate: float, *, n_fft: int = 512) -> np.ndarray:
    """(n_fft // 2 + 1, T) RGB image of log power, low frequencies at the bottom, hop n_fft / 4,
    80 dB of range from dark blue to yellow; T covers len(wav) / sample_rate seconds."""
    hop = n_fft // 4
    wav = np.pad(np.asarray(wav, np.float64), (n_fft // 2, n_fft // 2))
    n = max(1, 1 + (len(wav) - n_fft) // hop)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    power = np.abs(np.fft.rfft(wav[idx] * np.hanning(n_fft), axis=1)) ** 2  # (T, F)
    db = 10 * np.log10(power + 1e-10)
    level = np.clip((db - (db.max() - 80)) / 80, 0, 1).T[::-1]  # (F, T), 0..1
    lo, hi = np.array([20, 20, 70.0]), np.array([250, 230, 60.0])
    return (lo + level[..., None] ** 1.5 * (hi - lo)).astype(np.uint8)


def sync_plot(
    path: str | Path, *, title: str, duration: float, panels: list[Panel], width: int = 1200
) -> Path:
    """Draw the panels over [0, duration] s above a time axis and a legend (one swatch per
    label that has something drawn) and write a PNG to path."""
    left, right, gap = 110, 20, 8
    plot_w = width - left - right
    height = 34 + sum(p.height + gap for p in panels) + 28 + 26
    cv = Canvas(height, width)
    cv.text(10, 10, title)
    legend: dict[str, RGB] = {}
    y = 34

    def x_of(t: np.ndarray) -> np.ndarray:
        frac = np.clip(np.asarray(t, dtype=np.float64) / max(duration, 1e-9), 0, 1)
        return left + frac * (plot_w - 1)

    for p in panels:
        cv.rect(left, y, left + plot_w, y + p.height, (246, 246, 246))
        cv.text(8, y + p.height // 2 - 5, p.label[:12])
        mid, half = y + p.height / 2, p.height / 2 - 4
        if p.image is not None and p.image.size and p.image_span > 0:
            x1 = int(round(x_of(np.array(p.image_span))))
            rows = np.linspace(0, len(p.image) - 1, p.height).round().astype(int)
            cols = np.linspace(0, p.image.shape[1] - 1, max(1, x1 - left)).round().astype(int)
            cv.img[y : y + p.height, left : left + len(cols)] = p.image[rows][:, cols]
        if p.wave is not None and len(p.wave):
            cols = _column_extremes(p.wave, p.sample_rate, duration, plot_w)
            peak = max(np.abs(cols).max(), 1e-9)
            cv.columns(left, mid - cols[:, 1] / peak * half, mid - cols[:, 0] / peak * half, WAVE)
        for c in p.curves:
            if len(c.values) == 0:
                continue
            t = np.arange(len(c.values)) / c.fps
            v = np.asarray(c.values, dtype=np.float64) / max(np.max(c.values), 1e-12)
            at = np.arange(plot_w) / (plot_w - 1) * duration
            ys = y + p.height - 4 - np.interp(at, t, v) * (p.height - 8)
            cv.columns(left, ys, np.r_[ys[:1], ys[:-1]], c.color)
            legend.setdefault(c.label, c.color)
        for m in p.marks:
            for x in x_of(m.times):
                cv.vline(int(round(x)), y, y + int(m.reach * p.height), m.color, dash=m.dash)
            if len(m.times):
                legend.setdefault(m.label, m.color)
        y += p.height + gap
    cv.rect(left, y, left + plot_w, y + 1, BLACK)
    cv.text(8, y + 9, "TIME (S)", GREY)
    step = _tick_step(duration)
    for t in np.arange(0.0, duration + 1e-9, step):
        x = int(round(x_of(t)))
        cv.rect(x, y, x + 1, y + 6, BLACK)
        cv.text(x - 8, y + 9, f"{t:g}")
    x = 10
    for name, color in legend.items():
        cv.rect(x, y + 34, x + 14, y + 44, color)
        x = cv.text(x + 20, y + 34, name) + 24
    path = Path(path)
    path.write_bytes(encode_png(cv.img))
    return path


def _column_extremes(
    wave: np.ndarray, sample_rate: float, duration: float, n_cols: int
) -> np.ndarray:
    """(n_cols, 2) min and max of the samples falling in each pixel column."""
    edges = np.linspace(0.0, duration * sample_rate, n_cols + 1).astype(np.int64)
    out = np.zeros((n_cols, 2))
    for i in range(n_cols):
        seg = wave[edges[i] : max(edges[i + 1], edges[i] + 1)]
        if len(seg):
            out[i] = seg.min(), seg.max()
    return out


def _tick_step(duration: float) -> float:
    for step in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0):
        if duration / step <= 14:
            return step
    return 120.0
