"""Sounds for AVSynth: recorded one-shots per (object, surface) material pair, ambience, mixing.

The one-shots (``avlink_cli/assets/oneshots``, CC0, see CREDITS.md there) are loaded lazily,
cut so that their attack starts at sample 0 (less a 0.5 ms fade-in) and resampled to the clip's
rate. Time convention: an event at time t seconds is placed on the sample grid, n = t * rate,
and its one-shot's sample 0 is written at audio sample n; the attack is within 1 ms of n.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

# Which recorded one-shots fit a contact between two materials (order of the pair matters
# only for lookup; `sound_for` tries both orders, then a wildcard on the second).
SOUNDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("rubber", "wood"): ("drum_tom_lo_hard", "drum_tom_mid_hard", "drum_heavy_kick"),
    ("rubber", "stone"): ("bd_haus", "drum_heavy_kick"),
    ("rubber", "metal"): ("drum_tom_hi_hard", "drum_tom_mid_hard"),
    ("rubber", "drum"): ("drum_tom_hi_hard", "drum_tom_mid_hard", "drum_tom_lo_hard"),
    ("rubber", "rubber"): ("elec_pop", "tabla_ke1"),
    ("metal", "metal"): ("perc_bell", "drum_cowbell", "elec_ping"),
    ("metal", "wood"): ("perc_impact1", "drum_cowbell"),
    ("metal", "stone"): ("perc_impact2", "perc_impact1"),
    ("metal", "drum"): ("drum_snare_hard",),
    ("wood", "wood"): ("elec_wood", "tabla_te1", "tabla_ke1"),
    ("wood", "stone"): ("perc_impact2", "tabla_te1"),
    ("wood", "metal"): ("drum_cymbal_closed", "drum_cowbell"),
    ("wood", "drum"): ("drum_snare_hard", "drum_snare_soft", "sn_dolf"),
    ("plastic", "*"): ("elec_tick", "elec_pop"),
    ("hand", "hand"): ("perc_snap", "perc_snap2"),
    ("door", "wood"): ("perc_door",),
    ("lid", "wood"): ("tabla_dhec", "tabla_na", "tabla_tas1"),
    ("lid", "metal"): ("drum_cymbal_closed", "perc_impact1"),
}

# Attack threshold, as a fraction of the peak, where a one-shot is cut to start. The door
# recording creaks for 170 ms before the slam; the slam is the contact.
_ATTACK = {"perc_door": 0.7, "perc_bell": 0.5}
# Seconds to keep (then a 10 ms fade) where a recording holds a second hit: elec_wood knocks
# twice, 64 ms apart. One contact must give one onset.
_KEEP_S = {"elec_wood": 0.055}
_SOURCE_RATE = 22_050
_PRE_ROLL_S = 0.0005


def sound_for(rng: np.random.Generator, a: str, b: str) -> str:
    """Name of a one-shot for a contact of material ``a`` on material ``b``."""
    for key in ((a, b), (b, a), (a, "*"), (b, "*")):
        if key in SOUNDS:
            names = SOUNDS[key]
            return names[rng.integers(len(names))]
    raise KeyError(f"no one-shot for a contact of {a} on {b}")


def all_sounds() -> list[str]:
    """Every one-shot name the table uses, sorted."""
    return sorted({n for names in SOUNDS.values() for n in names})


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """Band-limited (FFT) resampling of a short zero-padded signal; sample 0 stays at t = 0."""
    if src == dst:
        return x.astype(np.float32)
    pad = len(x) // 4 + 64  # zero tail so the circular FFT does not wrap the decay onto the attack
    n = len(x) + pad
    m = round(n * dst / src)
    spec = np.fft.rfft(x, n)
    out = np.zeros(m // 2 + 1, complex)
    k = min(len(spec), len(out))
    out[:k] = spec[:k]
    y = np.fft.irfft(out, m) * (m / n)
    return y[: round(len(x) * dst / src)].astype(np.float32)


@functools.lru_cache(maxsize=256)
def load_oneshot(name: str, sample_rate: int) -> np.ndarray:
    """(S,) float32 one-shot at sample_rate, attack at sample 0, peak 1. Cached per process."""
    import soundfile as sf

    path = resources.files("avlink_cli") / "assets" / "oneshots" / f"{name}.flac"
    with resources.as_file(path) as p:
        x, sr = sf.read(p, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    a = np.abs(x)
    attack = int(np.argmax(a >= _ATTACK.get(name, 0.2) * a.max()))
    start = max(0, attack - round(_PRE_ROLL_S * sr))
    x = x[start:].copy()
    fade = attack - start
    if fade:
        x[:fade] *= np.linspace(0.0, 1.0, fade, endpoint=False)
    if name in _KEEP_S:
        keep, tail = round(_KEEP_S[name] * sr), round(0.01 * sr)
        x = x[: keep + tail]
        x[keep:] *= np.linspace(1.0, 0.0, len(x) - keep)
    y = resample(x, sr, sample_rate)
    return (y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def ambience(rng: np.random.Generator, n: int, sample_rate: int) -> tuple[np.ndarray, dict]:
    """Coloured background noise, (n,) float32, and its description (level in dBFS RMS).

    Spectral slope 1/f^beta (0 white, 1 pink, 2 brown), a random low-pass, and a slow
    amplitude swell, so that no two clips share a noise floor.
    """
    beta = float(rng.uniform(0.0, 2.0))
    level_db = float(rng.uniform(-58.0, -40.0))
    cutoff = float(rng.uniform(1500.0, sample_rate / 2))
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = np.maximum(f, 20.0) ** (-beta / 2) / (1 + (f / cutoff) ** 4)
    spec = (rng.standard_normal(len(f)) + 1j * rng.standard_normal(len(f))) * shape
    x = np.fft.irfft(spec, n)
    t = np.arange(n) / sample_rate
    depth, rate = rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.6)
    x *= 1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    x *= 10 ** (level_db / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-12)
    info = {"beta": round(beta, 3), "level_db": round(level_db, 2)}
    return x.astype(np.float32), info


def speed_gain(speed: float, ref: float) -> float:
    """Linear gain for an impact at ``speed`` (units/s) where ``ref`` is a hard hit: 0.15..1."""
    return float(np.clip(speed / ref, 0.0, 1.0) ** 0.8 * 0.85 + 0.15)


def _hp_rms(x: np.ndarray) -> float:
    """RMS of the first difference (a crude high-pass), 0 for fewer than 2 samples."""
    return float(np.sqrt(np.mean(np.diff(x) ** 2))) if len(x) > 1 else 0.0


def mix(
    bed: np.ndarray, hits: list[tuple[int, str, float, float, int]], sample_rate: int
) -> tuple[np.ndarray, list[float]]:
    """Add one-shots to ``bed``. A hit is (start sample, name, gain, playback rate, group).

    A rate factor r > 1 plays the one-shot faster (higher, shorter); its sample 0 stays at the
    start sample. A new hit in a group (one sounding object) damps the ringing of that group's
    previous hit within 3 ms, as a hand or mallet touching a bell would, and a ring that would
    still be within 14 dB of its attack by then is made to decay faster. A hit whose first 5 ms
    would be less than 12 dB above the 20 ms before it (compared on first differences, i.e.
    high-passed) is raised until it is (up to gain 1), so every contact is heard. The mix is
    scaled down as a whole if it would clip. Returns the mix and the gain each hit got, in the
    order of ``hits``.
    """
    out = bed.astype(np.float32).copy()
    n, win, damp = len(out), max(1, sample_rate // 50), max(1, round(0.003 * sample_rate))
    order = sorted(range(len(hits)), key=lambda i: hits[i])
    gains = [0.0] * len(hits)
    for pos, i in enumerate(order):
        start, name, gain, rate, group = hits[i]
        x = load_oneshot(name, sample_rate)
        if rate != 1.0:
            x = np.interp(np.arange(0, len(x) - 1, rate), np.arange(len(x)), x)
        nxt = [hits[j][0] for j in order[pos + 1 :] if hits[j][4] == group]
        if nxt and nxt[0] - start < len(x):
            keep = nxt[0] - start
            x = x[: keep + damp].copy()
            x[keep:] *= np.linspace(1.0, 0.0, len(x) - keep)
            # A long ring (a bell struck again soon) decays faster, to 14 dB under its attack
            # by the next hit of the same object.
            ring = _hp_rms(x[max(0, keep - win) : keep]) / max(_hp_rms(x[: win // 4]), 1e-9)
            if ring > 10 ** (-14 / 20) and keep > win:
                rate = np.log(ring / 10 ** (-14 / 20)) / (keep - win / 2)
                x *= np.exp(-rate * np.arange(len(x)))
        # Loudness compared on first differences: onsets are heard (and detected) in the
        # upper bands, where a low thump over a ringing bell can be lost.
        floor = _hp_rms(out[max(0, start - win) : start])
        head = _hp_rms(x[: win // 4])
        gains[i] = min(1.0, max(gain, 4.0 * floor / max(head, 1e-9)))
        if start < n:
            seg = x[: n - start]
            out[start : start + len(seg)] += gains[i] * seg
    peak = float(np.abs(out).max())
    if peak > 0.98:
        out *= 0.98 / peak
        gains = [g * 0.98 / peak for g in gains]
    return out.astype(np.float32), gains
