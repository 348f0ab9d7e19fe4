"""Audio onset detection: a numpy port of ``librosa.onset.onset_detect`` as CondFoleyGen calls it.

CondFoleyGen (``predict_onset.py``) runs ``onset_detect(wav, sr=22050, units='samples',
delta=0.3)`` on mono audio at 22050 Hz under librosa 0.8.0 (its ``conda_env.yml`` pins it).
The same arithmetic here, with no librosa, scipy or numba:

1. power STFT: periodic Hann window, n_fft 2048, hop 512, centred frames, the signal padded by
   n_fft // 2 on both sides (``pad_mode='reflect'``, librosa 0.8's default; librosa >= 0.10
   pads with zeros, ``'constant'``: pass ``pad_mode`` to match a newer librosa);
2. 128-band Slaney mel filterbank (``htk=False, norm='slaney'``, 0 Hz to sr / 2, weights
   rounded to float32 as librosa stores them);
3. ``power_to_db`` (ref 1.0, amin 1e-10, top_db 80; ref only shifts every value by a constant,
   so ref=max would give the same flux);
4. spectral flux with lag 1 and max_size 1: ``mean_over_mels(max(0, S[t] - S[t - 1]))``, then
   shifted right by ``lag + n_fft // (2 * hop)`` = 3 frames (zeros in front) and trimmed to the
   frame count, no detrending;
5. ``onset_detect``: envelope minus its minimum, divided by its maximum (+ tiny); an all-zero
   envelope has no onsets; then ``peak_pick`` with librosa's defaults at this rate and hop
   (pre_max 1, post_max 1, pre_avg 4, post_avg 5, wait 1 frame) and ``delta``; no backtracking.

Time convention: frame t is centred on sample ``t * hop``; onsets in samples are
``frame * hop`` at the analysis rate (22050 Hz unless told otherwise).
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 128
PAD_MODE = "reflect"  # librosa 0.8.0, as pinned by CondFoleyGen


def resample(
    wav: np.ndarray,
    orig_sr: int,
    target_sr: int,
    *,
    zero_crossings: int = 32,
    rolloff: float = 0.945,
    beta: float = 10.0,
    chunk: int = 16384,
) -> np.ndarray:
    """Band-limited resampling of a (S,) signal by Kaiser-windowed sinc interpolation.

    Output sample n sits at input position ``n * orig_sr / target_sr`` (sample 0 stays at t = 0)
    and there are ``ceil(S * target_sr / orig_sr)`` of them; the signal is zero outside [0, S).
    The kernel is a sinc low-pass at ``rolloff`` times the lower Nyquist frequency with
    ``zero_crossings`` lobes each side, tapered by a Kaiser window: flat (0.0 dB) to 0.82 of
    that Nyquist, -0.9 dB at 0.91, more than 100 dB of rejection above it. Integer rates only
    (the kernel is tabulated per output phase, target_sr / gcd phases). Returns float64.
    """
    x = np.asarray(wav, dtype=np.float64)
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return x.copy()
    g = np.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g  # output n is at input position n * down / up
    n_out = -(-len(x) * up // down)
    cutoff = rolloff * min(1.0, up / down)  # in units of the input Nyquist frequency
    half = int(np.ceil(zero_crossings / cutoff))  # kernel half-width in input samples
    taps = np.arange(-half + 1, half + 1)  # (K,)
    d = (np.arange(up) / up)[:, None] - taps[None, :]  # (up, K) distance, per phase
    u = np.clip(d * cutoff / zero_crossings, -1.0, 1.0)
    table = cutoff * np.sinc(cutoff * d) * np.i0(beta * np.sqrt(1.0 - u * u)) / np.i0(beta)
    xp = np.pad(x, (half, half + 1))
    out = np.empty(n_out)
    for s in range(0, n_out, chunk):
        pos = np.arange(s, min(s + chunk, n_out)) * down  # (n,) positions in 1/up samples
        base, phase = np.divmod(pos, up)
        out[s : s + len(pos)] = np.einsum("nk,nk->n", xp[base[:, None] + taps + half], table[phase])
    return out


def hann(n: int) -> np.ndarray:
    """Periodic Hann window of length n (``scipy.signal.get_window('hann', n, fftbins=True)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def stft_power(
    y: np.ndarray, *, n_fft: int = N_FFT, hop: int = HOP, pad_mode: str = PAD_MODE
) -> np.ndarray:
    """|STFT|^2 of a (S,) signal, (1 + n_fft // 2, 1 + S // hop); frame t centred on t * hop."""
    yp = np.pad(np.asarray(y, dtype=np.float64), n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop]  # (T, n_fft)
    spec = np.fft.rfft(frames * hann(n_fft), axis=-1)  # (T, F)
    return (spec.real**2 + spec.imag**2).T  # (F, T)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mel = hz / f_sp
    high = hz >= min_log_hz
    return np.where(
        high, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep, mel
    )


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of hz_to_mel."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    high = mel >= min_log_mel
    return np.where(high, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(
    sr: float, n_fft: int, *, n_mels: int = N_MELS, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Slaney-normalised triangular mel filters, (n_mels, 1 + n_fft // 2), as float32 values.

    Triangles over ``n_mels + 2`` points evenly spaced in Slaney mels from fmin to fmax (default
    sr / 2), each scaled by 2 / (its width in Hz) so that every band has equal area.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    fft_hz = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, F)
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32).astype(np.float64)


def power_to_db(power: np.ndarray, *, amin: float = 1e-10, top_db: float = 80.0) -> np.ndarray:
    """10 log10(power) (ref 1.0), floored at amin and at top_db below the maximum."""
    db = 10.0 * np.log10(np.maximum(amin, power))
    return np.maximum(db, db.max() - top_db)


def onset_strength(
    y: np.ndarray,
    *,
    sr: float = SAMPLE_RATE,
    n_fft: int = N_FFT,
    hop: int = HOP,
    n_mels: int = N_MELS,
    lag: int = 1,
    pad_mode: str = PAD_MODE,
) -> np.ndarray:
    """librosa's default onset strength envelope of a (S,) signal, (1 + S // hop,)."""
    mel_db = power_to_db(
        mel_filterbank(sr, n_fft, n_mels=n_mels)
        @ stft_power(y, n_fft=n_fft, hop=hop, pad_mode=pad_mode)
    )
    flux = np.maximum(0.0, mel_db[:, lag:] - mel_db[:, :-lag]).mean(axis=0)  # (T - lag,)
    # librosa centres the flux: lag frames for the difference, n_fft / 2 for the centred window.
    shift = lag + n_fft // (2 * hop)
    return np.concatenate([np.zeros(shift), flux])[: mel_db.shape[1]]


def peak_pick(
    x: np.ndarray,
    *,
    pre_max: int,
    post_max: int,
    pre_avg: int,
    post_avg: int,
    delta: float,
    wait: int,
) -> np.ndarray:
    """Frame indices n of ``librosa.util.peak_pick``: x[n] is the maximum of
    x[n - pre_max : n + post_max], at least ``delta`` above the mean of
    x[n - pre_avg : n + post_avg] (both windows truncated at the ends), and more than ``wait``
    frames after the previous pick.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    picks: list[int] = []
    last = -np.inf
    for i in range(n):
        if x[i] != x[max(0, i - pre_max) : min(n, i + post_max)].max():
            continue
        if x[i] < x[max(0, i - pre_avg) : min(n, i + post_avg)].mean() + delta:
            continue
        if i > last + wait:
            picks.append(i)
            last = i
    return np.asarray(picks, dtype=np.int64)


def onset_detect(
    y: np.ndarray,
    *,
    sr: float = SAMPLE_RATE,
    hop: int = HOP,
    delta: float = 0.07,
    pad_mode: str = PAD_MODE,
    envelope: np.ndarray | None = None,
) -> np.ndarray:
    """Onset frames of a (S,) signal at sr, like ``librosa.onset.onset_detect(units='frames')``.

    librosa's default delta is 0.07; CondFoleyGen uses 0.3. Multiply by ``hop`` for samples.
    ``envelope`` skips the onset-strength computation.
    """
    if envelope is None and len(y) < 2:
        return np.zeros(0, dtype=np.int64)
    env = onset_strength(y, sr=sr, hop=hop, pad_mode=pad_mode) if envelope is None else envelope
    env = env - env.min()
    env = env / (env.max() + np.finfo(env.dtype).tiny)
    if not env.any() or not np.all(np.isfinite(env)):
        return np.zeros(0, dtype=np.int64)

    # librosa's defaults: 30 ms before, 0 ms (+1 frame) after for the max; 100 ms either side
    # (+1 frame) for the mean; 30 ms wait; float frame counts (sr * s // hop) rounded up.
    def frames(seconds: float, extra: int = 0) -> int:
        return int(np.ceil(seconds * sr // hop + extra))

    return peak_pick(
        env,
        pre_max=frames(0.03),
        post_max=frames(0.0, 1),
        pre_avg=frames(0.10),
        post_avg=frames(0.10, 1),
        wait=frames(0.03),
        delta=delta,
    )


def detect_onsets(
    wav: np.ndarray, sample_rate: int, *, delta: float = 0.3, pad_mode: str = PAD_MODE
) -> np.ndarray:
    """CondFoleyGen's onsets: (S,) mono audio at any rate -> onset positions in samples at
    22050 Hz (``onset_detect(wav, sr=22050, units='samples', delta=0.3)``), int64."""
    y = resample(wav, sample_rate, SAMPLE_RATE)
    return onset_detect(y, sr=SAMPLE_RATE, delta=delta, pad_mode=pad_mode) * HOP
