"""Drawing for AVSynth: a canvas of T frames and analytic, anti-aliased shapes, all in numpy.

Scene units: lengths are in frame heights (the frame is 1 unit tall and W/H units wide), with
the origin at the top-left corner and y pointing down, as in the image. A pixel (i, j) covers
[j, j + 1) x [i, i + 1) in pixel units; shapes are composited with their exact box-filtered
area (axis-aligned boxes) or a one-pixel signed-distance ramp (discs, capsules, rotated
boxes), so sub-pixel motion is smooth. Every shape argument may be a scalar or a (T,) array
giving its value at each frame time.
"""

from __future__ import annotations

import numpy as np

# Named colours for captions: (name, RGB in [0, 1]).
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "orange": (0.98, 0.55, 0.08),
    "yellow": (0.97, 0.88, 0.15),
    "green": (0.15, 0.70, 0.22),
    "teal": (0.05, 0.60, 0.60),
    "blue": (0.15, 0.30, 0.90),
    "purple": (0.55, 0.20, 0.75),
    "pink": (0.98, 0.45, 0.70),
    "white": (0.96, 0.96, 0.96),
    "black": (0.06, 0.06, 0.07),
}
METALS: dict[str, tuple[float, float, float]] = {
    "silver": (0.78, 0.80, 0.84),
    "steel": (0.55, 0.58, 0.63),
    "gold": (0.90, 0.74, 0.25),
    "copper": (0.80, 0.45, 0.25),
}
WOODS: dict[str, tuple[float, float, float]] = {
    "light": (0.82, 0.64, 0.40),
    "brown": (0.55, 0.34, 0.16),
    "dark": (0.36, 0.20, 0.09),
}
SKINS = [(0.96, 0.80, 0.66), (0.87, 0.65, 0.48), (0.66, 0.45, 0.30), (0.45, 0.30, 0.20)]

Color = tuple[float, float, float] | np.ndarray


def contrast(a: Color, b: Color) -> float:
    """Euclidean RGB distance, 0 (same) to about 1.7 (black vs white)."""
    return float(np.linalg.norm(np.asarray(a, float) - np.asarray(b, float)))


def pick_color(
    rng: np.random.Generator, table: dict[str, Color], avoid: list[Color], *, min_dist: float = 0.4
) -> tuple[str, np.ndarray]:
    """A named colour (slightly jittered) far from every colour in ``avoid``; best effort."""
    names = list(table)
    order = rng.permutation(len(names))
    jitter = rng.uniform(-0.04, 0.04, 3)
    best = max(order, key=lambda i: min([contrast(table[names[i]], c) for c in avoid] or [9.0]))
    for i in order:
        if all(contrast(table[names[i]], c) >= min_dist for c in avoid):
            best = i
            break
    rgb = np.clip(np.asarray(table[names[best]], float) + jitter, 0.0, 1.0)
    return names[best], rgb


def _col(v: float | np.ndarray, t: int) -> np.ndarray:
    """A scalar or (T,) array as a (T, 1, 1) array for broadcasting over (T, H, W)."""
    return np.broadcast_to(np.asarray(v, dtype=np.float32), (t,)).reshape(t, 1, 1)


class Canvas:
    """T RGB frames of H x W as float32 in [0, 1]; draw with scene-unit coordinates."""

    def __init__(self, n_frames: int, height: int, width: int) -> None:
        self.t, self.h, self.w = n_frames, height, width
        self.scale = float(height)  # pixels per scene unit
        self.img = np.zeros((n_frames, height, width, 3), np.float32)
        self._yc = (np.arange(height, dtype=np.float32) + 0.5).reshape(1, height, 1)
        self._xc = (np.arange(width, dtype=np.float32) + 0.5).reshape(1, 1, width)

    @property
    def aspect(self) -> float:
        """Frame width in scene units."""
        return self.w / self.h

    def fill(self, layer: np.ndarray) -> None:
        """Set every frame to a static (H, W, 3) picture."""
        self.img[:] = layer[None].astype(np.float32)

    def paint(self, cov: np.ndarray, color: Color) -> None:
        """Composite ``color`` with coverage ``cov`` (T, H, W) in [0, 1] over the frames."""
        c = np.asarray(color, np.float32)
        a = cov[..., None]
        self.img += a * (c - self.img)

    def box(self, x0, y0, x1, y1, color: Color) -> None:
        """Axis-aligned rectangle [x0, x1] x [y0, y1] (units) with exact pixel-area coverage."""
        s, t = self.scale, self.t
        px, py = self._xc - 0.5, self._yc - 0.5
        cx = np.clip(np.minimum(px + 1, _col(x1, t) * s) - np.maximum(px, _col(x0, t) * s), 0, 1)
        cy = np.clip(np.minimum(py + 1, _col(y1, t) * s) - np.maximum(py, _col(y0, t) * s), 0, 1)
        self.paint(cx * cy, color)

    def disc(self, cx, cy, r, color: Color) -> None:
        """Disc of centre (cx, cy) and radius r (units)."""
        s, t = self.scale, self.t
        d = np.hypot(self._xc - _col(cx, t) * s, self._yc - _col(cy, t) * s)
        self.paint(np.clip(_col(r, t) * s - d + 0.5, 0, 1), color)

    def capsule(self, x0, y0, x1, y1, r, color: Color) -> None:
        """Segment (x0, y0)-(x1, y1) thickened by radius r, round ends (units)."""
        s, t = self.scale, self.t
        ax, ay = _col(x0, t) * s, _col(y0, t) * s
        bx, by = _col(x1, t) * s - ax, _col(y1, t) * s - ay
        px, py = self._xc - ax, self._yc - ay
        u = np.clip((px * bx + py * by) / np.maximum(bx * bx + by * by, 1e-9), 0, 1)
        d = np.hypot(px - u * bx, py - u * by)
        self.paint(np.clip(_col(r, t) * s - d + 0.5, 0, 1), color)

    def rbox(self, cx, cy, angle, half_len, half_w, color: Color) -> None:
        """Rectangle centred at (cx, cy), long axis at ``angle`` radians from +x (towards +y)."""
        s, t = self.scale, self.t
        ca, sa = np.cos(_col(angle, t)), np.sin(_col(angle, t))
        dx, dy = self._xc - _col(cx, t) * s, self._yc - _col(cy, t) * s
        qu = np.abs(dx * ca + dy * sa) - _col(half_len, t) * s
        qv = np.abs(-dx * sa + dy * ca) - _col(half_w, t) * s
        outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
        sdf = outside + np.minimum(np.maximum(qu, qv), 0)
        self.paint(np.clip(0.5 - sdf, 0, 1), color)

    def to_uint8(self) -> np.ndarray:
        """(T, H, W, 3) uint8 frames."""
        return np.round(np.clip(self.img, 0, 1) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- static layers


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in units, (H, 1) and (1, W)."""
    y = ((np.arange(h) + 0.5) / h).reshape(h, 1)
    x = ((np.arange(w) + 0.5) / h).reshape(1, w)
    return y, x


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(H, W) value noise in [0, 1]: a random cells x cells grid, bilinearly upsampled."""
    g = rng.random((cells + 1, cells + 1))
    y = np.linspace(0, cells, h, endpoint=False) + cells / (2 * h)
    x = np.linspace(0, cells, w, endpoint=False) + cells / (2 * w)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    a, b = g[y0][:, x0], g[y0][:, x0 + 1]
    c, d = g[y0 + 1][:, x0], g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


BACKGROUNDS = ("solid", "gradient", "noise", "stripes", "checks")


def background(rng: np.random.Generator, h: int, w: int) -> tuple[str, np.ndarray, list[Color]]:
    """A random static backdrop: (style, (H, W, 3) picture, its main colours for contrast)."""
    style = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    c1 = rng.uniform(0.05, 0.95, 3)
    c2 = np.clip(c1 + rng.uniform(-0.35, 0.35, 3), 0, 1)
    y, x = _grid(h, w)
    if style == "solid":
        m = np.zeros((h, w))
    elif style == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        m = np.cos(a) * x + np.sin(a) * y
        m = (m - m.min()) / max(np.ptp(m), 1e-9)
    elif style == "noise":
        m = smooth_noise(rng, h, w, int(rng.integers(2, 7)))
        m = 0.8 * m + 0.2 * rng.random((h, w))
    elif style == "stripes":
        a, period = rng.uniform(0, np.pi), rng.uniform(0.12, 0.35)
        m = 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * (np.cos(a) * x + np.sin(a) * y) / period))
    else:
        k = rng.uniform(0.1, 0.25)
        m = ((np.floor(x / k) + np.floor(y / k)) % 2).astype(float)
    pic = c1 * (1 - m[..., None]) + c2 * m[..., None]
    return style, pic, [c1, c2] if style != "solid" else [c1]


FLOORS = {"wood": "wooden floor", "stone": "stone floor", "metal": "metal floor"}


def floor_layer(
    rng: np.random.Generator, material: str, h: int, w: int, top: float
) -> tuple[np.ndarray, np.ndarray, Color]:
    """A floor filling y >= top (units): ((H, W) coverage, (H, W, 3) texture, mean colour)."""
    y, x = _grid(h, w)
    cov = np.clip(y * h + 0.5 - top * h, 0, 1) * np.ones((1, w))
    if material == "wood":
        _, base = pick_color(rng, WOODS, [])
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * y / rng.uniform(0.03, 0.06) + 3 * x)
        seams = (np.abs(((x / rng.uniform(0.2, 0.4)) % 1.0) - 0.5) > 0.46).astype(float)
        shade = 1 - 0.12 * grain - 0.3 * seams
    elif material == "stone":
        base = np.full(3, rng.uniform(0.35, 0.7)) + rng.uniform(-0.05, 0.05, 3)
        shade = 0.8 + 0.4 * smooth_noise(rng, h, w, 6) * (0.7 + 0.3 * rng.random((h, w)))
    else:
        _, base = pick_color(rng, METALS, [])
        shade = 1.1 - 0.35 * (y - top) / max(1 - top, 1e-6)
    tex = np.clip(np.asarray(base)[None, None] * shade[..., None], 0, 1)
    return cov, tex, np.asarray(base, float)
