"""What would a perfect V2A generator score? Each AVSynth clip's own soundtrack, re-rendered with
its noise floor drawn anew: every one-shot, its time and gain exactly as in the reference, the
ambience with the same spectrum, level and swell but other random numbers (a generator cannot
know the noise). Scoring these against the references gives the ceiling of the V2A metrics:

    avlink synth TEST --split test --count 100 --seed 0
    python experiments/v2a_oracle.py ORACLE --split test --count 100
    avlink eval ORACLE --reference TEST --mode v2a

The clips must be the ones `avlink synth` rendered (same split, seeds 0..count-1, avsynth-s
sizes). Writes ORACLE/<split>-<seed>.oracle.wav (16 kHz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import avlink_cli.synth.scenes as scenes
from avlink_cli.media.encode import write_audio
from avlink_cli.presets import get_preset
from avlink_cli.synth import render_clip


class _OtherNoise:
    """A numpy Generator whose standard_normal draws come from another stream; the scene's own
    stream advances exactly as before, so every later draw of the scene is unchanged."""

    def __init__(self, rng: np.random.Generator, other: np.random.Generator) -> None:
        self._rng, self._other = rng, other

    def standard_normal(self, *args, **kwargs):
        self._rng.standard_normal(*args, **kwargs)
        return self._other.standard_normal(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._rng, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--preset", default="avsynth-s")
    ap.add_argument("--noise-seed", type=int, default=12345)
    a = ap.parse_args()
    preset = get_preset(a.preset)
    a.out.mkdir(parents=True, exist_ok=True)
    ambience = scenes.ambience
    try:
        for seed in range(a.count):
            other = np.random.default_rng([a.noise_seed, seed])
            scenes.ambience = lambda rng, n, sr, o=other: ambience(_OtherNoise(rng, o), n, sr)
            clip = render_clip(preset, seed=seed, split=a.split)
            write_audio(
                a.out / f"{a.split}-{seed:07d}.oracle.wav", clip.audio, 16000, overwrite=True
            )
    finally:
        scenes.ambience = ambience
    print(f"{a.count} oracle soundtracks in {a.out}")


if __name__ == "__main__":
    main()
