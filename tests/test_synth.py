"""AVSynth: determinism, split seeds, sidecar truth against the audio and the frames, files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from avlink_cli.presets import PRESETS, get_preset
from avlink_cli.synth import (
    SEEDS_PER_SPLIT,
    ClipSpec,
    global_seed,
    load_clip,
    render_clip,
    synth_split,
)
from avlink_cli.synth.contacts import Bounce
from avlink_cli.synth.dataset import sidecar_text
from avlink_cli.synth.render import Canvas
from avlink_cli.synth.scenes import build_scene
from avlink_cli.synth.sounds import SOUNDS, all_sounds, load_oneshot

SR = 16_000


def detect_onsets(x: np.ndarray, sr: int, *, rise_db: float = 12.0) -> np.ndarray:
    """Onset times (s) of a mono signal, by energy rise, independent of the generator.

    The signal is high-passed (first difference) so rumble does not count. A 4 ms window
    (1 ms hop) whose energy is rise_db above the median of the 30 windows that end before it
    marks an onset; the onset is the first sample there above 4x that median's RMS. Onsets
    closer than 100 ms to the previous one are merged into it.
    """
    x = np.diff(x.astype(np.float64), prepend=0.0)
    hop, w = sr // 1000, 4 * sr // 1000
    starts = np.arange(0, len(x) - w, hop)
    c = np.concatenate([[0.0], np.cumsum(x**2)])
    db = 10 * np.log10((c[starts + w] - c[starts]) / w + 1e-14)
    lag = w // hop + 30
    base = np.full_like(db, np.inf)
    base[lag:] = np.median(sliding_window_view(db, 30)[: len(db) - lag], axis=1)
    out: list[float] = []
    for j in np.nonzero(db - base >= rise_db)[0]:
        if out and starts[j] / sr - out[-1] < 0.1:
            continue
        lo = max(0, starts[j] - w)
        seg = np.abs(x[lo : starts[j] + w])
        out.append((lo + int(np.argmax(seg > 4 * 10 ** (base[j] / 20)))) / sr)
    return np.array(out)


# ------------------------------------------------------------------------------ seeds


def test_same_seed_same_clip_and_bytes():
    a, b = render_clip("tiny", 7), render_clip("tiny", 7)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert sidecar_text(a.sidecar) == sidecar_text(b.sidecar)
    c = render_clip("tiny", 8)
    assert not np.array_equal(a.frames, c.frames) and not np.array_equal(a.audio, c.audio)


def test_splits_draw_from_disjoint_seeds():
    a, b = render_clip("tiny", 7, "train"), render_clip("tiny", 7, "val")
    assert not np.array_equal(a.frames, b.frames)
    assert global_seed(SEEDS_PER_SPLIT - 1, "train") < global_seed(0, "val")
    assert global_seed(SEEDS_PER_SPLIT - 1, "val") < global_seed(0, "test")
    for bad in (-1, SEEDS_PER_SPLIT):
        with pytest.raises(ValueError):
            global_seed(bad, "train")
    with pytest.raises(ValueError):
        render_clip("tiny", 0, "dev")


def test_sizes_follow_the_spec():
    for name in PRESETS:
        p = get_preset(name)
        spec = ClipSpec.from_preset(p)
        assert (spec.n_frames, spec.n_samples) == (p.n_frames, p.n_samples)
    clip = render_clip(ClipSpec(3.0, 25.0, 64, 48, 22_050), 3)
    assert clip.frames.shape == (75, 64, 48, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.shape == (66_150,) and clip.audio.dtype == np.float32
    s = clip.sidecar
    assert s["size"] == [64, 48] and s["fps"] == 25.0 and s["sample_rate"] == 22_050


def test_variety_of_kinds_counts_and_sounds():
    kinds, quiet, sounds, counts = set(), set(), set(), set()
    for seed in range(150):
        sc = build_scene(
            np.random.default_rng(seed), duration=4.0, sample_rate=SR, height=32, width=32
        )
        counts.add(len(sc.events))
        kinds |= {e.kind for e in sc.events}
        sounds |= {e.sound for e in sc.events}
        quiet |= {a.kind for a in sc.actors if not a.sounding}
    assert kinds == {"bounce", "fall", "strike", "collide", "close", "clap"}
    assert quiet == {"slide", "swing", "drift", "hover", "spin"}
    assert len(sounds) >= 8 and counts >= set(range(0, 8)) and max(counts) <= 8
    assert set(all_sounds()) <= {n for names in SOUNDS.values() for n in names}


# ------------------------------------------------------------------------ sidecar truth


def test_event_times_are_the_audio_onsets():
    """Every event has an onset within 10 ms; every onset belongs to an event."""
    n_events = 0
    for seed in range(40):
        clip = render_clip("avsynth-s", seed)
        times = np.array([e["time"] for e in clip.sidecar["events"]])
        found = detect_onsets(clip.audio, SR)
        for t in times:
            assert len(found) and np.abs(found - t).min() <= 0.010, (seed, t, found)
        for t in found:
            near = (t - times > -0.010) & (t - times < 0.1)
            assert near.any(), f"seed {seed}: onset at {t:.3f}s with no event ({times})"
        n_events += len(times)
    assert n_events > 60


def test_one_shots_start_at_their_attack():
    for name in all_sounds():
        x = load_oneshot(name, SR)
        assert np.abs(x).max() == pytest.approx(1.0)
        first = int(np.argmax(np.abs(x) >= 0.1))
        assert first < 0.002 * SR, name  # the attack is within 2 ms of sample 0


def test_silent_clips_have_no_events_and_only_ambience():
    seen = 0
    for seed in range(120):
        clip = render_clip("tiny", seed)
        s = clip.sidecar
        if s["objects"]:
            continue
        seen += 1
        assert s["events"] == [] and s["caption"].startswith(("nothing", "a quiet"))
        rms = float(np.sqrt(np.mean(clip.audio**2)))
        assert rms < 0.015 and np.abs(clip.audio).max() < 0.08
        assert len(detect_onsets(clip.audio, SR)) == 0
    assert seen >= 3


def test_contacts_touch_exactly_at_event_times():
    """gap(t) is 0 at every event, never negative, and only comes down to 0 at an event: no
    touch without a sound (staying in contact after one, like a shut lid, is no new touch)."""
    checked = 0
    for seed in range(80):
        sc = build_scene(
            np.random.default_rng(seed), duration=4.0, sample_rate=SR, height=32, width=32
        )
        for a in sc.actors:
            ev = np.array([e.time for e in a.events()])
            if not len(ev):
                if np.isfinite(a.gap(np.zeros(1))).all():  # hover: close, never touching
                    assert a.gap(np.linspace(0, 4, 4001)).min() > 0.05
                continue
            assert np.abs(a.gap(ev)).max() < 1e-9, (seed, a.kind)
            t = np.linspace(0, 4, 8001)
            g = a.gap(t)
            assert g.min() > -1e-9, (seed, a.kind)
            touch = t[1:][(g[1:] < 1e-9) & (g[:-1] > 1e-9)]  # 0 reached from above
            assert np.all(np.abs(touch[:, None] - ev[None]).min(axis=1) <= 0.001), (seed, a.kind)
            assert g[t < ev[0] - 0.001].min(initial=1.0) > 0, (seed, a.kind)
            checked += len(ev)
    assert checked > 100


def test_rendered_ball_lands_on_the_surface_at_the_event_frame():
    fps, h = 12.0, 32
    t = np.arange(48) / fps
    n = 0
    for seed in range(300):
        sc = build_scene(
            np.random.default_rng(seed), duration=4.0, sample_rate=SR, height=h, width=h
        )
        for a in sc.actors:
            if not isinstance(a, Bounce):
                continue
            a.color, a.material = np.ones(3), "rubber"
            cv = Canvas(len(t), h, h)
            a.draw(cv, t)
            cov = cv.img[..., 0]
            ys = (np.arange(h) + 0.5)[None, :, None]
            mass = cov.sum(axis=(1, 2))
            cy = (cov * ys).sum(axis=(1, 2)) / np.maximum(mass, 1e-9)
            want = (a.prop.top - a.r - a.height(t)) * h
            inside = mass > 0.95 * np.pi * (a.r * h) ** 2  # whole ball in the frame
            assert np.abs(cy - want)[inside].max() < 0.05
            for e in a.events():
                k = round(e.time * fps)
                if k >= len(t) or not inside[k]:
                    continue
                bottom = cy[k] + a.r * h
                # The ball's bottom is on the surface, give or take the distance it travels
                # between the contact and the frame instant.
                slack = e.speed * abs(k / fps - e.time) * h + 0.05
                assert abs(bottom - a.prop.top * h) <= slack
                lowest = max(range(max(k - 1, 0), min(k + 2, len(t))), key=lambda i: cy[i])
                assert abs(lowest - k) <= 1
                n += 1
    assert n > 30


# ------------------------------------------------------------------------------- files


def test_synth_writes_mp4_that_decode_to_the_right_length(tmp_path):
    from avlink_cli.media import OutputExistsError, read_audio, read_video

    paths = synth_split(tmp_path, split="val", count=2, seed=5, preset="tiny")
    assert [p.name for p in paths] == ["val-0000005.mp4", "val-0000006.mp4"]
    spec = ClipSpec.from_preset("tiny")
    for p in paths:
        side = json.loads(p.with_suffix(".json").read_text())
        assert side["seed"] in (5, 6) and side["split"] == "val"
        frames = read_video(p, fps=spec.fps, size=(spec.height, spec.width))
        audio = read_audio(p, sample_rate=SR)
        assert frames.shape == (spec.n_frames, spec.height, spec.width, 3)
        assert abs(len(audio) - spec.n_samples) <= SR // 100
        ref = render_clip(spec, side["seed"], "val")
        other = render_clip(spec, side["seed"], "test")
        err = np.abs(frames.astype(int) - ref.frames).mean()  # H.264, yuv420p at 16x16
        assert err < 12 and err < 0.5 * np.abs(frames.astype(int) - other.frames).mean()
        times = np.array([e["time"] for e in side["events"]])
        found = detect_onsets(audio, SR)  # AAC keeps the onsets where the sidecar says
        assert len(times) and all(np.abs(found - t).min() <= 0.010 for t in times)
    with pytest.raises(OutputExistsError):
        synth_split(tmp_path, split="val", count=1, seed=6, preset="tiny")


def test_npz_cache_holds_the_exact_arrays(tmp_path):
    paths = synth_split(tmp_path, count=3, seed=2, preset="tiny", fmt="npz", workers=2)
    for i, p in enumerate(paths):
        got, ref = load_clip(p), render_clip("tiny", 2 + i)
        assert np.array_equal(got.frames, ref.frames) and np.array_equal(got.audio, ref.audio)
        assert p.with_suffix(".json").read_text() == sidecar_text(ref.sidecar)
