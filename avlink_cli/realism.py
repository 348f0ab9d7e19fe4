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

Sound has its own Fréchet distance (`audio_features`, `audio_fd`), between a generated set of
soundtracks and the true ones, on one vector per clip (mono, 22050 Hz): the mean and the spread
over time of 24 log-mel bands, each band's level taken relative to the clip's mean level (48
values: timbre, and how much each band moves), then the crest factor (peak over RMS, dB), the
mean spectral flux (dB a frame, rises only), the onset rate (onsets a second), the mean spectral
centroid (log2 Hz), the mean spectral flatness of the frames that sound, and the share of
silent frames (60 dB under the clip's loudest) (6). The absolute
level is left out on purpose: `avlink dub` normalises loudness on the written file, and the
score should judge the sound, not the gain. Standardised by the true set, as for video, with
the same floor: the FD between two halves of the true soundtracks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import onsets

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


STATS = ("frame_change", "detail", "flat_share", "moving_share")


def clip_stats(frames: np.ndarray) -> dict[str, float | list[float]]:
    """One clip's figures (STATS) and its feature vector ("features"), JSON-ready."""
    out: dict[str, float | list[float]] = {
        name: round(fn(frames), 4)
        for name, fn in zip(STATS, (frame_change, detail, flat_share, moving_share), strict=True)
    }
    out["features"] = [round(float(v), 5) for v in features(frames)]
    return out


def compare_stats(gen: Sequence[dict], true: Sequence[dict]) -> dict[str, float]:
    """Realism of generated clips against true renders, from their `clip_stats`.

    Returns each figure's mean over the generated set, the true set's, their ratio (gen/true),
    and the Fréchet distance on standardised `features` (needs 2 clips a set)."""
    out: dict[str, float] = {}
    for name in STATS:
        g = float(np.mean([c[name] for c in gen]))
        r = float(np.mean([c[name] for c in true]))
        out[name], out[f"{name}_true"] = round(g, 4), round(r, 4)
        out[f"{name}_ratio"] = round(g / r, 3) if r > 0 else float("inf")
    if len(gen) > 1 and len(true) > 1:
        fg, ft = _standardised(
            np.array([c["features"] for c in gen]), np.array([c["features"] for c in true])
        )
        out["fd"] = round(frechet(fg, ft), 3)
    return out


def compare(gen: Sequence[np.ndarray], true: Sequence[np.ndarray]) -> dict[str, float]:
    """`compare_stats` of two lists of clips (T, H, W, 3) uint8."""
    return compare_stats([clip_stats(c) for c in gen], [clip_stats(c) for c in true])


def fd_floor(true: Sequence[np.ndarray]) -> float:
    """The FD between the two halves of a set of true renders: what two real sets score."""
    half = len(true) // 2
    a, b = _standardised(
        np.stack([features(c) for c in true[:half]]), np.stack([features(c) for c in true[half:]])
    )
    return round(frechet(a, b), 3)


def passes(report: dict[str, float], *, within: float = 1.5) -> bool:
    """The realism check: frame change and detail each within `within`x of the true renders."""
    return all(1 / within <= report[f"{k}_ratio"] <= within for k in ("frame_change", "detail"))


AUDIO_BANDS = 24
AUDIO_FFT, AUDIO_HOP = 1024, 256
SILENT_DB = 60.0  # a frame is silent when its level is this far under the clip's loudest frame


def audio_features(wav: np.ndarray, sr: int = onsets.SAMPLE_RATE) -> np.ndarray:
    """One soundtrack's feature vector (54,) for the audio Fréchet distance (module docstring)."""
    y = np.asarray(wav, dtype=np.float64)
    if len(y) < AUDIO_FFT:
        y = np.pad(y, (0, AUDIO_FFT - len(y)))
    power = onsets.stft_power(y, n_fft=AUDIO_FFT, hop=AUDIO_HOP)  # (F, T)
    mel = onsets.mel_filterbank(sr, AUDIO_FFT, n_mels=AUDIO_BANDS) @ power
    db = 10 * np.log10(mel + 1e-10)
    db = np.maximum(db, db.max() - 80.0)
    shape = db - db.mean()  # levels relative to the clip's own
    frame_db = 10 * np.log10(power.sum(0) / AUDIO_FFT + 1e-10)
    rms = np.sqrt(np.mean(y**2)) + 1e-9
    crest = 20 * np.log10(np.abs(y).max() / rms + 1e-9)
    flux = np.maximum(0.0, np.diff(db, axis=1)).mean() if db.shape[1] > 1 else 0.0
    seconds = len(y) / sr
    rate = len(onsets.onset_detect(y, sr=sr, delta=0.07)) / seconds
    freqs = np.fft.rfftfreq(AUDIO_FFT, 1.0 / sr)
    total = power.sum(0) + 1e-12
    centroid = np.log2((freqs[:, None] * power).sum(0) / total + 1.0).mean()
    heard = frame_db >= frame_db.max() - SILENT_DB
    flat = np.exp(np.log(power + 1e-12).mean(0)) / (power.mean(0) + 1e-12)
    flatness = flat[heard].mean() if heard.any() else 1.0  # of the frames that sound
    silent = 1 - float(heard.mean())
    tail = [crest, flux, rate, centroid, flatness, silent]
    return np.concatenate([shape.mean(1), shape.std(1), np.asarray(tail)]).astype(np.float64)


def audio_fd(gen: Sequence[Sequence[float]], true: Sequence[Sequence[float]]) -> dict[str, float]:
    """Fréchet distance of generated soundtracks' `audio_features` to the true ones', and the
    floor: the true set's two halves against each other. An FD grows as the sets shrink, so
    audio_fd_half sets the generated first half against the true second half, at the floor's
    sizes. Needs 4 clips a set."""
    g, t = np.asarray(gen, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(g) < 4 or len(t) < 4:
        return {}
    fg, ft = _standardised(g, t)
    half = len(ft) // 2
    return {
        "audio_fd": round(frechet(fg, ft), 3),
        "audio_fd_half": round(frechet(fg[:half], ft[half:]), 3),
        "audio_fd_floor": round(frechet(ft[:half], ft[half:]), 3),
        "audio_fd_clips": len(g),
    }
