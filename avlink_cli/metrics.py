"""Sync metrics: CondFoleyGen's onset accuracy and AP, timing errors, A2V event matching, AV-Align.

Units: onsets for the CondFoleyGen metrics are sample indices at 22050 Hz (``onsets.SAMPLE_RATE``),
as ``onset_detect(units='samples')`` gives them; everything else is in seconds from the start of
the clip.

CondFoleyGen's ``eval_osnets`` (``predict_onset.py``), reproduced with its quirks:

- |wav| is min-max normalised over the clip; an onset's confidence is the peak of that within
  [o - 1102, o + 1102) samples (int(0.05 * 22050) = 1102). Python slicing there makes windows
  that start before sample 0 empty and crash; here they are clipped at 0. A constant wav
  (max = min, a 0/0 there) gives confidence 0.
- NMS: in order of falling confidence (ties: the later onset first, numpy 1.19's stable sort of
  short lists, reversed), keep an onset and drop the others closer than 0.05 s. Their loop
  removes items from the list it is iterating, so after each dropped onset the next one in time
  escapes that round; this is kept, it changes which onsets survive when three or more fall
  within 50 ms.
- Matching: for each reference onset in time order, the generated onsets closer than 0.1 s are
  candidates; the one with the largest normalised |wav| *at its own sample* (ties: the later)
  is a hit, scored with its windowed confidence, and removed; none gives (1, 0). Once all
  generated onsets are used the loop stops, so the remaining reference onsets add nothing to
  the AP (they still count as misses in the accuracy). Unused generated onsets give
  (0, confidence).
- accuracy = hits / reference onsets, 0 when the reference has none. AP is sklearn's
  ``average_precision_score``: with no reference onsets (all labels 0) it is 0.0, as sklearn
  >= 1.1 returns (CondFoleyGen's pinned 0.24.1 gave nan); with no onsets on either side there is
  no label at all, sklearn raises and the AP here is nan (left out of means). Note that a
  silent generation against a reference with onsets scores accuracy 0 but AP 1.0 (every label
  is 1): that is what the definition gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .onsets import SAMPLE_RATE

BT1359_EARLY = 0.045  # ITU-R BT.1359: sound may lead the picture by up to 45 ms ...
BT1359_LATE = 0.125  # ... or lag it by up to 125 ms before viewers notice


@dataclass(frozen=True)
class OnsetScore:
    """One clip's CondFoleyGen scores; y_true / y_score are the AP's labels and scores."""

    acc: float
    ap: float
    hits: int
    n_ref: int
    n_gen: int  # generated onsets left after NMS
    y_true: tuple[int, ...]
    y_score: tuple[float, ...]


def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """sklearn's ``average_precision_score`` for binary labels: sum over distinct score
    thresholds (high to low) of precision x recall increase, no interpolation. nan for no
    labels, 0.0 when no label is positive."""
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if y.size == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    if tps[-1] == 0:
        return 0.0
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def onset_confidence(
    onsets: np.ndarray, wav: np.ndarray, *, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Peak of min-max normalised |wav| within +-0.05 s of each onset (samples), (N,)."""
    return _window_peak(_normalised_abs(wav), onsets, int(0.05 * sample_rate))


def _window_peak(norm: np.ndarray, onsets: np.ndarray | list[int], half: int) -> np.ndarray:
    return np.array([norm[max(0, o - half) : o + half].max(initial=0.0) for o in onsets])


def _normalised_abs(wav: np.ndarray) -> np.ndarray:
    a = np.abs(np.asarray(wav, dtype=np.float64))
    span = a.max(initial=0.0) - a.min(initial=0.0)
    return (a - a.min(initial=0.0)) / span if span > 0 else np.zeros_like(a)


def onset_nms(
    onsets: np.ndarray,
    confidence: np.ndarray,
    *,
    window: float = 0.05,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """CondFoleyGen's ``onset_nms`` (quirk included, see the module notes): kept onsets, sorted."""
    remain = [int(o) for o in onsets]
    kept = []
    for i in np.argsort(np.asarray(confidence), kind="stable")[::-1]:
        cur = int(onsets[i])
        if cur not in remain:
            continue
        kept.append(cur)
        remain.remove(cur)
        j = 0
        while j < len(remain):
            if abs(cur - remain[j]) < window * sample_rate:
                del remain[j]  # the next item slides into slot j and is skipped, as in theirs
            j += 1
    return np.array(sorted(kept), dtype=np.int64)


def onset_acc_ap(
    ref_onsets: np.ndarray,
    gen_onsets: np.ndarray,
    gen_wav: np.ndarray,
    *,
    delta: float = 0.1,
    sample_rate: int = SAMPLE_RATE,
) -> OnsetScore:
    """CondFoleyGen's onset accuracy and AP of one clip (``eval_osnets``).

    ref_onsets, gen_onsets: sample indices at sample_rate; gen_wav: the generated audio (S,) at
    sample_rate, for the confidences. delta: the matching half-window in seconds.
    """
    norm, half = _normalised_abs(gen_wav), int(0.05 * sample_rate)
    gen = np.asarray(gen_onsets, dtype=np.int64)
    kept = onset_nms(gen, _window_peak(norm, gen, half), sample_rate=sample_rate)
    unused = [int(o) for o in kept]
    y_true: list[int] = []
    y_score: list[float] = []
    hits = 0
    for o in np.asarray(ref_onsets, dtype=np.int64):
        near = [k for k, g in enumerate(unused) if abs(g - o) < delta * sample_rate]
        y_true.append(1)
        if not near:
            y_score.append(0.0)
            continue
        at_onset = np.array([norm[unused[k]] for k in near])
        best = near[int(np.argsort(at_onset, kind="stable")[-1])]
        hits += 1
        y_score.append(float(_window_peak(norm, [unused[best]], half)[0]))
        del unused[best]
        if not unused:
            break
    y_true += [0] * len(unused)
    y_score += [float(c) for c in _window_peak(norm, unused, half)]
    n_ref = len(ref_onsets)
    return OnsetScore(
        acc=hits / n_ref if n_ref else 0.0,
        ap=average_precision(np.array(y_true), np.array(y_score)),
        hits=hits,
        n_ref=n_ref,
        n_gen=len(kept),
        y_true=tuple(y_true),
        y_score=tuple(y_score),
    )


@dataclass(frozen=True)
class TimingStats:
    """Detected events against true events, in seconds; error = detected - true (late > 0).

    errors: per true event, nan where missed. median_abs / p90_abs / bias (median signed
    error) are over the matched events (nan when none); bt1359_share is the share of all true
    events whose error lies in [-45 ms, +125 ms] (missed ones are outside).
    """

    errors: tuple[float, ...]
    median_abs: float
    p90_abs: float
    bias: float
    bt1359_share: float
    n_events: int
    n_missed: int


def timing_errors(
    true_times: np.ndarray, detected_times: np.ndarray, *, miss_after: float = 0.25
) -> TimingStats:
    """For each true event the nearest detected one; farther than ``miss_after`` s is a miss."""
    true_times = np.asarray(true_times, dtype=np.float64)
    det = np.asarray(detected_times, dtype=np.float64)
    err = np.full(len(true_times), np.nan)
    if len(det) and len(true_times):
        diff = det[None, :] - true_times[:, None]  # (E, D)
        nearest = diff[np.arange(len(true_times)), np.abs(diff).argmin(axis=1)]
        err = np.where(np.abs(nearest) <= miss_after, nearest, np.nan)
    return timing_stats(err)


def timing_stats(errors: np.ndarray) -> TimingStats:
    """TimingStats of signed errors in seconds (nan = missed), e.g. pooled over clips."""
    err = np.asarray(errors, dtype=np.float64)
    hit = err[~np.isnan(err)]
    inside = (hit >= -BT1359_EARLY) & (hit <= BT1359_LATE)
    nan = float("nan")
    return TimingStats(
        errors=tuple(err.tolist()),
        median_abs=float(np.median(np.abs(hit))) if len(hit) else nan,
        p90_abs=float(np.percentile(np.abs(hit), 90)) if len(hit) else nan,
        bias=float(np.median(hit)) if len(hit) else nan,
        bt1359_share=float(inside.sum() / len(err)) if len(err) else nan,
        n_events=len(err),
        n_missed=len(err) - len(hit),
    )


def envelope(
    wav: np.ndarray, *, sample_rate: int = SAMPLE_RATE, smooth: float = 0.001
) -> np.ndarray:
    """Amplitude envelope (S,): magnitude of the analytic signal (FFT Hilbert transform),
    smoothed by a ``smooth`` s moving average. Unlike a short RMS it does not ripple at the
    period of low tones (a 50 Hz kick)."""
    x = np.asarray(wav, dtype=np.float64)
    n = len(x)
    if n == 0:
        return x
    gain = np.zeros(n // 2 + 1)
    gain[0] = 1.0
    gain[1 : (n + 1) // 2] = 2.0
    if n % 2 == 0:
        gain[n // 2] = 1.0
    spec = np.fft.fft(x)
    spec[: n // 2 + 1] *= gain
    spec[n // 2 + 1 :] = 0.0
    env = np.abs(np.fft.ifft(spec))
    win = max(1, int(smooth * sample_rate))
    return np.convolve(env, np.ones(win) / win, mode="same")


MERGE_S = 0.005  # refined attacks closer than this are one attack: a quarter of a hop


def refine_onsets(
    wav: np.ndarray,
    onsets: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    hop: int = 512,
    level: float = 0.25,
    merge: float = MERGE_S,
) -> np.ndarray:
    """Attack times in seconds of onsets (samples), for timing errors; sorted, one per attack.

    librosa's onset frames land 0.3 to 2 hops after the attack of a sharp hit (the flux is
    shifted right by 2 frames and frames are 23 ms apart). Each onset moves to where the
    ``envelope`` first climbs ``level`` of the way from its quietest point to its peak within
    [onset - 3 hops, onset + 1 hop]. Two onsets one hop apart can both be refined onto the same
    attack (0.6407 and 0.6416 s): attacks closer than ``merge`` seconds are one, the first kept,
    so that a hit is not counted twice (onsets per event, AP).
    """
    env = envelope(wav, sample_rate=sample_rate)
    out = []
    for o in np.asarray(onsets, dtype=np.int64):
        lo, hi = max(0, o - 3 * hop), min(len(env), o + hop)
        if hi - lo < 2:
            out.append(o / sample_rate)
            continue
        seg = env[lo:hi]
        peak = int(seg.argmax())
        quiet = int(seg[: peak + 1].argmin())
        rise = seg[quiet : peak + 1] >= seg[quiet] + level * (seg[peak] - seg[quiet])
        out.append((lo + quiet + int(np.argmax(rise))) / sample_rate)
    kept: list[float] = []
    for t in sorted(out):
        if not kept or t - kept[-1] >= merge:
            kept.append(t)
    return np.asarray(kept)


def match_share(audio_times: np.ndarray, visual_times: np.ndarray, *, fps: float) -> float:
    """Share of audio events with a visual event within +-1 frame (1 / fps s, inclusive); nan
    when there are no audio events. Read it against ``match_chance``: a detector that fires
    everywhere matches everything."""
    a = np.asarray(audio_times, dtype=np.float64)
    v = np.asarray(visual_times, dtype=np.float64)
    if len(a) == 0:
        return float("nan")
    if len(v) == 0:
        return 0.0
    return float((np.abs(a[:, None] - v[None, :]).min(axis=1) <= 1.0 / fps + 1e-9).mean())


def match_chance(visual_times: np.ndarray, *, fps: float, duration: float) -> float:
    """The match share that audio events at random times would get: the fraction of
    [0, duration] s lying within +-1 frame of some visual event."""
    if duration <= 0:
        return float("nan")
    half = 1.0 / fps
    covered, end = 0.0, 0.0
    for t in np.sort(np.asarray(visual_times, dtype=np.float64)):
        lo, hi = max(t - half, end, 0.0), min(t + half, duration)
        covered += max(0.0, hi - lo)
        end = max(end, hi)
    return covered / duration


def local_maxima_times(trajectory: np.ndarray, fps: float) -> np.ndarray:
    """TempoTokens' video peaks: indices i (1 .. n-2) with x[i-1] < x[i] > x[i+1], as i / fps."""
    x = np.asarray(trajectory, dtype=np.float64)
    if len(x) < 3:
        return np.zeros(0)
    i = 1 + np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] > x[2:]))
    return i / fps


def av_align(audio_peaks: np.ndarray, video_peaks: np.ndarray, *, fps: float) -> float:
    """TempoTokens' AV-Align (``calc_intersection_over_union``), peaks in seconds.

    An audio peak counts once if some video peak lies strictly within 1 / fps of it; the score
    is count / (audio + video peaks - count). Several audio peaks may count on one video peak,
    so the score can exceed 1, as in theirs. nan when there are no peaks at all (theirs divides
    by zero). TempoTokens' audio peaks are ``onset_detect`` frames with librosa's default delta
    0.07, as times; their video peaks are local maxima of the mean Farneback flow magnitude
    (OpenCV); here ``motion.flow_magnitude`` of a numpy block-matching flow stands in for it.
    """
    a = np.asarray(audio_peaks, dtype=np.float64)
    v = np.asarray(video_peaks, dtype=np.float64)
    hit = 0
    if len(v):
        hit = int((np.abs(a[:, None] - v[None, :]) < 1.0 / fps).any(axis=1).sum())
    union = len(a) + len(v) - hit
    return hit / union if union else float("nan")
