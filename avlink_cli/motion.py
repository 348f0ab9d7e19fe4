"""Motion in video frames, numpy only: block-matching flow, motion energy and contact events.

Frames are (T, H, W, 3) uint8 RGB; frame k is on screen at k / fps (the media.py convention).
A flow field ``u_t`` (t = 1 .. T-1) moves frame t-1 onto frame t, so it describes the interval
around time (t - 0.5) / fps. Flows are (dy, dx) in pixels per frame of the input frames.

Why a flow and not just frame differences for contacts: a contact is a sudden change of
velocity (a bounce reverses it, a hit stops it), not a change of how much moves. The mean
absolute frame difference of a falling-then-rising ball barely changes at the bounce, and for
an object moving more than its size per frame the second difference of the pixels is as large
at constant speed as at a bounce. The change of the mean flow vector between consecutive frame
pairs is large exactly where the velocity jumps, and small under steady motion or gravity.
"""

from __future__ import annotations

import numpy as np

from .onsets import peak_pick


def gray(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> (T, H, W) float32 luma in [0, 1] (BT.601, as cv2's BGR2GRAY)."""
    f = np.asarray(frames, dtype=np.float32) / 255.0
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def _shrink(g: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Area-average (T, H, W) by the smallest integer factor that brings H and W to max_side."""
    factor = max(1, int(np.ceil(max(g.shape[1:]) / max_side)))
    if factor == 1:
        return g, 1
    t, h, w = g.shape
    h2, w2 = h // factor, w // factor
    g = g[:, : h2 * factor, : w2 * factor].reshape(t, h2, factor, w2, factor)
    return g.mean(axis=(2, 4)), factor


def block_flow(
    frames: np.ndarray,
    *,
    block: int = 4,
    radius: int = 8,
    max_side: int = 128,
    chunk: int = 32,
) -> np.ndarray:
    """Block-matching optical flow between consecutive frames, (T-1, Hb, Wb, 2) as (dy, dx) in
    pixels of the input frames; block (i, j) covers rows from i * f * block and columns from
    j * f * block of the input, f being the shrink factor.

    The luma is shrunk (area average, integer factor f) until its longer side is at most
    ``max_side``; each ``block`` x ``block`` block of frame t takes the displacement within
    +-``radius`` shrunk pixels (an exhaustive search: the reach is radius / max_side of the
    frame per frame) whose patch of frame t-1 has the least sum of absolute differences. A
    small cost per pixel of displacement keeps flat and static blocks at zero; a parabola
    through the neighbouring costs gives sub-pixel precision.
    """
    g, factor = _shrink(gray(frames), max_side)
    t, h, w = g.shape
    hb, wb = h // block, w // block
    out = np.zeros((max(t - 1, 0), hb, wb, 2), np.float32)
    if t < 2 or hb == 0 or wb == 0:
        return out
    g = g[:, : hb * block, : wb * block]
    r, side = radius, 2 * radius + 1
    weight = np.float32(1e-3 * block * block)  # SAD per pixel of displacement
    for s in range(1, t, chunk):
        e = min(s + chunk, t)
        cur = g[s:e]  # (n, H, W)
        prev = np.pad(g[s - 1 : e - 1], ((0, 0), (r, r), (r, r)), mode="edge")
        cost = np.empty((side, side, e - s, hb, wb), np.float32)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                # content at x in frame t came from x - (dy, dx) in frame t-1
                moved = prev[:, r - dy : r - dy + cur.shape[1], r - dx : r - dx + cur.shape[2]]
                sad = np.abs(cur - moved).reshape(e - s, hb, block, wb, block).sum(axis=(2, 4))
                cost[dy + r, dx + r] = sad + weight * np.hypot(dy, dx)
        by, bx = np.divmod(cost.reshape(side * side, e - s, hb, wb).argmin(axis=0), side)
        out[s - 1 : e - 1, ..., 0] = by - r + _parabola(cost, by, bx, axis=0)
        out[s - 1 : e - 1, ..., 1] = bx - r + _parabola(cost, by, bx, axis=1)
    return out * factor


def _parabola(cost: np.ndarray, iy: np.ndarray, ix: np.ndarray, *, axis: int) -> np.ndarray:
    """Sub-pixel offset in [-0.5, 0.5] of the cost minimum along one axis of (Y, X, n, Hb, Wb)."""
    side = cost.shape[axis]
    i = iy if axis == 0 else ix
    grid = tuple(np.indices(iy.shape))

    def at(k: np.ndarray) -> np.ndarray:
        k = np.clip(k, 0, side - 1)
        return cost[(k, ix, *grid)] if axis == 0 else cost[(iy, k, *grid)]

    c_lo, c0, c_hi = at(i - 1), at(i), at(i + 1)
    curv = c_lo - 2 * c0 + c_hi
    off = 0.5 * (c_lo - c_hi) / np.where(curv > 0, curv, 1)
    off = np.where((curv > 0) & (i > 0) & (i < side - 1), off, 0.0)
    return np.clip(off, -0.5, 0.5)


def motion_energy(frames: np.ndarray) -> np.ndarray:
    """Mean absolute luma difference to the previous frame, (T,), in [0, 1]; element 0 is 0."""
    g = gray(frames)
    e = np.zeros(len(g), np.float64)
    if len(g) > 1:
        e[1:] = np.abs(np.diff(g, axis=0)).mean(axis=(1, 2))
    return e


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """Mean flow magnitude per frame, (T,), in pixels per frame, laid out like TempoTokens'
    ``flow_trajectory``: element t is the flow into frame t and element 0 repeats element 1."""
    if len(flow) == 0:
        return np.zeros(1)
    mag = np.hypot(flow[..., 0], flow[..., 1]).mean(axis=(1, 2))  # (T-1,)
    return np.concatenate([mag[:1], mag]).astype(np.float64)


def contact_strength(flow: np.ndarray) -> np.ndarray:
    """How suddenly the motion changes at each frame, (T,), in [0, 2]: the sum of two parts,
    each scaled to a peak of 1 per clip.

    - global: |V_{t+1} - V_t|, the change across frame t of the mean flow vector V over all
      blocks (a momentum-like summary: zero when nothing moves);
    - local: the sum over blocks b of |V_{b,t+1} - V_{b,t}|, each block's own flow change. A
      small object that bounces changes the flow of the few blocks it covers, which the mean
      dilutes among everything else; an object crossing block edges also changes it, which
      the global part does not.

    Elements 0 and T-1 are 0.
    """
    n = len(flow) + 1
    s = np.zeros(n)
    if n >= 3:
        f = flow.astype(np.float64)
        dv = f[1:] - f[:-1]  # (T-2, Hb, Wb, 2)
        local = np.hypot(dv[..., 0], dv[..., 1]).sum(axis=(1, 2))
        mean = f.mean(axis=(1, 2))  # (T-1, 2)
        glob = np.hypot(*(mean[1:] - mean[:-1]).T)
        for part in (glob, local):
            if part.max() > 1e-9:
                s[1:-1] += part / part.max()
    return s


def search_radius(fps: float) -> int:
    """Block-matching reach for a frame rate: 8 shrunk pixels per frame at 25 fps, scaled
    inversely with fps (motion per frame grows as the rate falls), between 4 and 24."""
    return int(np.clip(round(200.0 / fps), 4, 24))


def visual_events(
    frames: np.ndarray,
    fps: float,
    *,
    delta: float = 0.1,
    flow: np.ndarray | None = None,
) -> np.ndarray:
    """Times in seconds of visible contacts: peaks of ``contact_strength``.

    The strength is scaled to [0, 1] per clip; a peak is the maximum over frames [t-1, t+1],
    at least ``delta`` above the mean over about +-0.1 s (at least +-2 frames), and one frame
    after the previous peak. Each time is refined by a parabola through the peak and its
    neighbours, so it can fall between frames. Clips with no motion change have no events.

    How often the events land on true contacts is in docs/results.md (the A2V contact detector).
    Silent motion (things starting, stopping, turning without a sound) also gives events.
    """
    flow = block_flow(frames, radius=search_radius(fps)) if flow is None else flow
    s = contact_strength(flow)
    if s.max() <= 1e-6:
        return np.zeros(0)
    s = s / s.max()
    avg = max(2, int(round(0.1 * fps)))
    peaks = peak_pick(s, pre_max=1, post_max=2, pre_avg=avg, post_avg=avg + 1, delta=delta, wait=1)
    times = []
    for p in peaks:
        off = 0.0
        if 0 < p < len(s) - 1:
            curv = s[p - 1] - 2 * s[p] + s[p + 1]
            off = float(np.clip(0.5 * (s[p - 1] - s[p + 1]) / curv, -0.5, 0.5)) if curv < 0 else 0.0
        times.append((p + off) / fps)
    return np.asarray(times)
