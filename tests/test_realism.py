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
