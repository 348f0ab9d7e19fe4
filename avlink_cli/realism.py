"""How far generated videos are from real ones: frame change, spatial detail, a Fréchet distance.

Every figure reads uint8 frames (T, H, W, 3) at the model's size and is compared between a set
of generated clips and a set of true renders; a ratio of 1 means "like the renders".

- frame change: mean absolute difference between consecutive frames, in grey levels (0-255)
  over every pixel and channel. Noise scores far above real clips; a still image scores 0.
- detail: mean absolute difference between neighbouring pixels within a frame (across and
  down), in grey levels. Textured noise scores high, a blur low.
- flat share: share of pixels whose largest neighbour difference is under 4 grey levels. Real
  scenes are mostly flat regions with sharp edges; a textured colour field has few.
- Fréchet distance (FD): between Gaussians fitted to one feature vector per clip (`features`):
  the 4x4 average-pooled colour of the clip's mean frame (48 values: layout and palette), the
  per-channel mean and spread over the clip (6), and log frame change, log detail, flat share
  and the share of pixels that change by more than 8 levels between frames (4). The vector is
  standardised by the true set's spread, so every feature counts in units of real variation.
  Its floor is the FD between two disjoint sets of true renders (`fd_floor`), which scales with
  the sets' sizes: compare FDs only at equal sizes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FLAT_LEVELS = 4.0  # a pixel is flat when every neighbour is within this many grey levels
MOVING_LEVELS = 8.0  # a pixel moves when it changes by more than this between frames


def _f(frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got {frames.shape}")
    return frames.astype(np.float32)


def frame_change(frames: np.ndarray) -> float:
    f = _f(frames)
    return float(np.abs(np.diff(f, axis=0)).mean()) if len(f) > 1 else 0.0


def _neighbour_diffs(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.abs(np.diff(f, axis=2)), np.abs(np.diff(f, axis=1))  # across (W-1), down (H-1)


def detail(frames: np.ndarray) -> float:
    dx, dy = _neighbour_diffs(_f(frames))
    return float((dx.mean() + dy.mean()) / 2)


def flat_share(frames: np.ndarray) -> float:
    dx, dy = _neighbour_diffs(_f(frames))
    big = np.zeros(frames.shape[:3], dtype=np.float32)
    big[:, :, :-1] = np.maximum(big[:, :, :-1], dx.max(-1))
    big[:, :, 1:] = np.maximum(big[:, :, 1:], dx.max(-1))
    big[:, :-1] = np.maximum(big[:, :-1], dy.max(-1))
    big[:, 1:] = np.maximum(big[:, 1:], dy.max(-1))
    return float((big < FLAT_LEVELS).mean())


def moving_share(frames: np.ndarray) -> float:
    f = _f(frames)
    return float((np.abs(np.diff(f, axis=0)).max(-1) > MOVING_LEVELS).mean()) if len(f) > 1 else 0.0


def features(frames: np.ndarray) -> np.ndarray:
    """One clip's feature vector (58,) for the Fréchet distance (module docstring)."""
    f = _f(frames) / 255.0
    t, h, w, _ = f.shape
    mean_frame = f.mean(0)  # (H, W, 3)
    pooled = mean_frame[: h // 4 * 4, : w // 4 * 4].reshape(4, h // 4, 4, w // 4, 3).mean((1, 3))
    chan = np.concatenate([f.mean((0, 1, 2)), f.std((0, 1, 2))])
    stats = [
        np.log(frame_change(frames) + 0.1),
        np.log(detail(frames) + 0.1),
        flat_share(frames),
        moving_share(frames),
    ]
    return np.concatenate([pooled.ravel(), chan, np.asarray(stats, dtype=np.float32)])


def _sqrtm_trace(a: np.ndarray, b: np.ndarray) -> float:
    """trace(sqrt(a @ b)) for symmetric PSD a, b, via the symmetric sqrt(a) b sqrt(a)."""
    wa, va = np.linalg.eigh(a)
    ra = (va * np.sqrt(np.clip(wa, 0, None))) @ va.T
    w = np.linalg.eigvalsh(ra @ b @ ra)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to rows of x (N, D) and y (M, D)."""
    mx, my = x.mean(0), y.mean(0)
    cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    return float(((mx - my) ** 2).sum() + np.trace(cx) + np.trace(cy) - 2 * _sqrtm_trace(cx, cy))


def _standardised(gen: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = true.mean(0), true.std(0) + 1e-3
    return (gen - mu) / sd, (true - mu) / sd


def compare(gen: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> dict[str, float]:
    """Realism of generated clips against true renders (each a list of (T, H, W, 3) uint8).

    Returns each figure's mean over the generated set, the true set's, their ratio (gen/true)
    and the Fréchet distance on standardised `features`."""
    out: dict[str, float] = {}
    for name, fn in (
        ("frame_change", frame_change),
        ("detail", detail),
        ("flat_share", flat_share),
        ("moving_share", moving_share),
    ):
        g = float(np.mean([fn(c) for c in gen]))
        r = float(np.mean([fn(c) for c in true]))
        out[name], out[f"{name}_true"] = round(g, 4), round(r, 4)
        out[f"{name}_ratio"] = round(g / r, 3) if r > 0 else float("inf")
    fg, ft = _standardised(
        np.stack([features(c) for c in gen]), np.stack([features(c) for c in true])
    )
    out["fd"] = round(frechet(fg, ft), 3)
    return out


def fd_floor(true: Sequence[np.ndarray]) -> float:
    """The FD between the two halves of a set of true renders: what two real sets score."""
    half = len(true) // 2
    a, b = _standardised(
        np.stack([features(c) for c in true[:half]]), np.stack([features(c) for c in true[half:]])
    )
    return round(frechet(a, b), 3)


def passes(report: dict[str, float], *, within: float = 1.5) -> bool:
    """The realism check: frame change and detail each within `within`x of the true renders."""
    return all(
        1 / within <= report[f"{k}_ratio"] <= within for k in ("frame_change", "detail")
    )
