"""realism.py: each figure on frames whose answer is known."""

from __future__ import annotations

import numpy as np

from avlink_cli import realism


def still(level: int = 100) -> np.ndarray:
    return np.full((6, 16, 16, 3), level, np.uint8)


def test_figures_on_known_frames():
    flat = still()
    assert realism.frame_change(flat) == 0 and realism.detail(flat) == 0
    assert realism.flat_share(flat) == 1 and realism.moving_share(flat) == 0
    stripes = flat.copy()
    stripes[:, :, ::2] = 110  # every other column 10 levels up: detail 10 across, 0 down
    assert realism.detail(stripes) == 5 and realism.flat_share(stripes) == 0
    blink = flat.copy()
    blink[1::2] = 120  # every other frame 20 levels up
    assert realism.frame_change(blink) == 20 and realism.moving_share(blink) == 1


def test_frechet_zero_for_one_set_and_growing_with_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    assert abs(realism.frechet(x, x)) < 1e-6
    assert realism.frechet(x, x + 1.0) > realism.frechet(x, x + 0.5) > 0.2


def test_compare_and_the_check():
    rng = np.random.default_rng(1)
    true = [
        np.clip(still(int(v)) + rng.integers(0, 3, (6, 16, 16, 3)), 0, 255).astype(np.uint8)
        for v in rng.integers(40, 200, 8)
    ]
    noise = [rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8) for _ in range(8)]
    same = realism.compare(true, true)
    assert same["frame_change_ratio"] == 1 and abs(same["fd"]) < 1e-3 and realism.passes(same)
    rep = realism.compare(noise, true)
    assert rep["frame_change_ratio"] > 10 and rep["fd"] > 100 and not realism.passes(rep)


SR = 22050


def hits(rng: np.random.Generator, seconds: float = 2.0) -> np.ndarray:
    """Struck-object sound: a few decaying tones at random times, silence between them."""
    y = np.zeros(int(SR * seconds))
    t = np.arange(int(0.25 * SR)) / SR
    for start in rng.choice(np.arange(8) * int(0.25 * SR), 4, replace=False):
        tone = np.sin(2 * np.pi * rng.uniform(200, 1500) * t) * np.exp(-t * 30)
        y[start : start + len(t)] += 0.5 * tone
    return y


def test_audio_features_on_known_sound():
    rng = np.random.default_rng(2)
    y = hits(rng)
    f = realism.audio_features(y, SR)
    assert f.shape == (54,) and np.isfinite(f).all()
    crest, _, rate, _, flatness, silent = f[-6:]
    assert 1.0 <= rate <= 3.0  # 4 hits in 2 s
    assert silent > 0.2  # the gaps between hits
    noise = realism.audio_features(rng.normal(0, 0.1, 2 * SR), SR)
    assert noise[-2] > 5 * flatness and noise[-1] == 0  # white noise: flat spectrum, never silent
    # the level is not a feature: the same sound 10 dB quieter has (nearly) the same vector
    assert np.allclose(realism.audio_features(y * 10 ** (-10 / 20), SR), f, atol=1e-3)


def test_audio_fd_separates_noise_from_real_sound():
    rng = np.random.default_rng(3)
    true = [realism.audio_features(hits(rng), SR) for _ in range(12)]
    other = [realism.audio_features(hits(rng), SR) for _ in range(12)]
    noise = [realism.audio_features(rng.normal(0, 0.1, 2 * SR), SR) for _ in range(12)]
    alike, far = realism.audio_fd(other, true), realism.audio_fd(noise, true)
    assert alike["audio_fd_floor"] == far["audio_fd_floor"]  # the floor reads the true set only
    assert far["audio_fd"] > 10 * alike["audio_fd"]
    assert far["audio_fd_half"] > 10 * alike["audio_fd_floor"]
    assert realism.audio_fd(noise[:3], true) == {}  # too few to fit a Gaussian
