"""Sync metrics on recorded one-shots and rendered video: onset detection against known hit
times and against librosa (where installed), CondFoleyGen's accuracy / AP and their edge
cases, timing statistics, AV-Align, and contact events of a rendered bouncing ball."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avlink_cli import metrics, motion, onsets

SR = onsets.SAMPLE_RATE
SHOTS = Path(__file__).parents[1] / "avlink_cli" / "assets" / "oneshots"
# Drums and other sharp hits (perc_door, a creak of several transients, is left out).
DRUMS = [
    "bd_haus", "drum_cowbell", "drum_cymbal_closed", "drum_heavy_kick", "drum_snare_hard",
    "drum_snare_soft", "drum_tom_hi_hard", "drum_tom_lo_hard", "drum_tom_mid_hard", "elec_ping",
    "elec_pop", "elec_tick", "elec_wood", "perc_bell", "perc_impact1", "perc_impact2",
    "perc_snap", "perc_snap2", "sn_dolf", "tabla_dhec", "tabla_ke1", "tabla_na", "tabla_tas1",
    "tabla_te1",
]  # fmt: skip


def shot(name: str) -> np.ndarray:
    wav, sr = sf.read(SHOTS / f"{name}.flac", dtype="float64")
    assert sr == SR and wav.ndim == 1
    return wav


def place(names: list[str], times: np.ndarray, duration: float) -> np.ndarray:
    """A (S,) clip at 22050 Hz with each one-shot starting at its time (seconds)."""
    y = np.zeros(int(duration * SR))
    for name, t in zip(names, times, strict=True):
        i = int(round(t * SR))
        w = shot(name)[: len(y) - i]
        y[i : i + len(w)] += 0.7 * w
    return y


def hit_times(n: int, start: float = 0.21) -> np.ndarray:
    """Hits 0.45 s apart plus a drift of 3.3 ms each, so they fall on every phase of a hop."""
    return start + np.arange(n) * 0.4533


def render_ball(
    *,
    fps: float,
    n: int,
    period: float,
    t0: float,
    amp: float = 24.0,
    hw: tuple[int, int] = (64, 96),
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, H, W, 3) uint8 of a shaded ball bouncing on a floor while drifting right, and
    the contact times (s) that have a frame after them. Height above the floor is a parabola
    of amplitude amp px between contacts at t0 + k * period."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    floor, r = h - 6, 5.0
    bg = (40 + 20 * xx / w + 10 * np.sin(yy / 3.0))[..., None] * np.array([1.0, 1.0, 1.1])
    bg[floor:] = (90, 70, 50)
    frames = []
    for k in range(n):
        t = k / fps
        s = ((t - t0) % period) / period
        cy, cx = floor - r - amp * 4 * s * (1 - s), 15 + 20 * t
        d = np.hypot(yy - cy, xx - cx)
        cover = np.clip(r + 0.5 - d, 0, 1)[..., None]
        shade = 1.0 - 0.5 * np.clip((yy - cy + xx - cx) / (2 * r) + 0.5, 0, 1)[..., None]
        frames.append(bg * (1 - cover) + (np.array([230, 60, 40]) * shade + 25) * cover)
    contacts = t0 + period * np.arange(int(n / fps / period) + 2)
    contacts = contacts[(contacts > 1 / fps) & (contacts < (n - 2) / fps)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8), contacts


# ----------------------------------------------------------------------------- onset detection


def test_every_drum_hit_found_within_20ms() -> None:
    times = hit_times(len(DRUMS))
    y = place(DRUMS, times, times[-1] + 1.0)
    # the timing detector: librosa's default delta 0.07, then attack refinement
    on = onsets.onset_detect(y, delta=0.07) * onsets.HOP
    attacks = metrics.refine_onsets(y, on)
    err = np.array([np.abs(attacks - t).min() for t in times])
    assert err.max() < 0.020, dict(zip(DRUMS, np.round(err * 1000, 1), strict=True))
    # librosa's raw onset frames trail the attack by up to two hops (46 ms), never lead it
    late = np.array([np.min(on / SR - t, where=on / SR >= t - 0.005, initial=9) for t in times])
    assert np.all((late >= -0.005) & (late < 2 * onsets.HOP / SR))


def test_condfoleygen_detector_finds_even_hits() -> None:
    times = hit_times(8)
    on = drum_clip()[1] / SR
    assert len(on) == 8
    late = on - times
    assert np.all((late >= 0) & (late < 2 * onsets.HOP / SR)), late


def test_resample_keeps_the_band_and_removes_aliases() -> None:
    t = np.arange(48000) / 48000
    low = np.sin(2 * np.pi * 1000 * t)
    out = onsets.resample(low, 48000, SR)
    assert len(out) == int(np.ceil(48000 * SR / 48000))
    ref = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / SR)
    assert np.abs(out - ref)[200:-200].max() < 1e-3
    high = onsets.resample(np.sin(2 * np.pi * 15000 * t), 48000, SR)  # above 11025 Hz
    assert np.abs(high)[200:-200].max() < 1e-3
    assert np.array_equal(onsets.resample(low, SR, SR), low)


def test_silence_has_no_onsets() -> None:
    assert len(onsets.detect_onsets(np.zeros(SR), SR)) == 0


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_matches_librosa(pad_mode: str) -> None:
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    for _ in range(3):
        names = list(rng.choice(DRUMS, 7))
        times = np.sort(rng.uniform(0.0, 3.0, 7))
        y = place(names, times, 3.8) + 1e-4 * rng.standard_normal(int(3.8 * SR))
        ours_env = onsets.onset_strength(y, pad_mode=pad_mode)
        env = librosa.onset.onset_strength(y=y, sr=SR, pad_mode=pad_mode)
        assert ours_env.shape == env.shape
        assert np.corrcoef(ours_env, env)[0, 1] > 0.99999
        assert np.abs(ours_env - env).max() < 1e-4 * env.max()
        theirs = librosa.onset.onset_detect(onset_envelope=env, sr=SR, units="samples", delta=0.3)
        ours = onsets.onset_detect(y, delta=0.3, pad_mode=pad_mode) * onsets.HOP
        assert len(ours) == len(theirs)
        assert np.abs(ours - theirs).max() <= onsets.HOP


def test_mel_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=SR, n_fft=2048, n_mels=128)
    assert np.allclose(onsets.mel_filterbank(SR, 2048), ref, rtol=0, atol=1e-7)


# ------------------------------------------------------------------------- CondFoleyGen metrics


def drum_clip(shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Eight hits of varied one-shots (0.45 s apart), optionally shifted; (wav, onsets)."""
    names = ["drum_snare_hard", "tabla_na", "drum_tom_lo_hard", "drum_cowbell"] * 2
    y = place(names, hit_times(8) + shift, 4.2)
    return y, onsets.detect_onsets(y, SR)


def test_reference_against_itself_and_shifted() -> None:
    ref, ref_on = drum_clip()
    assert len(ref_on) == 8
    same = metrics.onset_acc_ap(ref_on, ref_on, ref)
    assert (same.acc, same.ap, same.hits) == (1.0, 1.0, 8)
    for shift in (0.05, -0.05):
        gen, gen_on = drum_clip(shift)
        s = metrics.onset_acc_ap(ref_on, gen_on, gen)
        assert (s.acc, s.ap) == (1.0, 1.0), shift
    gen, gen_on = drum_clip(0.2)
    far = metrics.onset_acc_ap(ref_on, gen_on, gen)
    assert far.acc == 0.0 and far.hits == 0
    # every reference onset scores 0 and every generated one is a false positive above 0,
    # so the AP is the precision at the last threshold: positives / all labels
    assert far.ap == pytest.approx(far.n_ref / (far.n_ref + far.n_gen))


def test_silence_edge_cases() -> None:
    ref, ref_on = drum_clip()
    silent = np.zeros_like(ref)
    none = onsets.detect_onsets(silent, SR)
    gen_silent = metrics.onset_acc_ap(ref_on, none, silent)
    assert gen_silent.acc == 0.0
    assert gen_silent.ap == 1.0  # all labels positive: CondFoleyGen's definition gives AP 1
    ref_silent = metrics.onset_acc_ap(none, ref_on, ref)
    assert (ref_silent.acc, ref_silent.ap) == (0.0, 0.0)
    assert np.isnan(metrics.onset_acc_ap(none, none, silent).ap)


def test_nms_keeps_condfoleygens_skip() -> None:
    # 1500 wins; dropping 1000 (within 50 ms) makes their loop skip 2000, which survives
    kept = metrics.onset_nms(np.array([1000, 1500, 2000]), np.array([0.5, 1.0, 0.4]))
    assert kept.tolist() == [1500, 2000]
    kept = metrics.onset_nms(np.array([1000, 1500, 5000]), np.array([0.5, 1.0, 0.4]))
    assert kept.tolist() == [1500, 5000]


def test_matching_stops_when_generated_onsets_run_out() -> None:
    wav = np.zeros(SR * 3)
    wav[[11025, 33075, 55125]] = 1.0
    s = metrics.onset_acc_ap(np.array([11025, 33075, 55125]), np.array([11100]), wav)
    assert s.acc == pytest.approx(1 / 3)
    assert s.y_true == (1,) and s.ap == 1.0  # the two unmatched references add no labels


def test_average_precision_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 25))
        y = rng.integers(0, 2, n)
        y[0] = 1
        score = np.round(rng.uniform(0, 1, n) * 4) / 4  # many ties
        assert metrics.average_precision(y, score) == pytest.approx(
            sk.average_precision_score(y, score)
        )


# --------------------------------------------------------------------------- timing and A2V


def test_timing_errors() -> None:
    true = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    det = np.array([1.01, 1.95, 3.2, 4.5, 7.0, 0.2])  # +10 ms, -50 ms, +200 ms, miss, miss
    s = metrics.timing_errors(true, det)
    assert s.n_events == 5 and s.n_missed == 2
    assert np.allclose(s.errors[:3], [0.01, -0.05, 0.2]) and np.isnan(s.errors[3])
    assert s.median_abs == pytest.approx(0.05)
    assert s.bt1359_share == pytest.approx(1 / 5)  # -50 ms is too early, +200 ms too late
    assert metrics.timing_errors(np.array([1.0]), np.array([1.125])).bt1359_share == 1.0
    assert metrics.timing_errors(true, np.zeros(0)).n_missed == 5


def test_av_align_as_tempotokens() -> None:
    fps = 10.0
    assert metrics.av_align(np.array([1.0, 2.0]), np.array([1.05, 2.05]), fps=fps) == 1.0
    assert metrics.av_align(np.array([1.0, 2.0]), np.array([1.0, 3.0]), fps=fps) == pytest.approx(
        1 / 3
    )
    assert metrics.av_align(np.array([1.0]), np.array([1.1]), fps=fps) == 0.0  # strict window
    # two audio peaks on one video peak both count: the score can pass 1
    assert metrics.av_align(np.array([1.0, 1.05]), np.array([1.02]), fps=fps) == 2.0
    assert np.isnan(metrics.av_align(np.zeros(0), np.zeros(0), fps=fps))
    traj = np.array([0.0, 1.0, 0.5, 0.5, 2.0, 1.0, 3.0])
    assert metrics.local_maxima_times(traj, fps).tolist() == [0.1, 0.4]


def test_match_share() -> None:
    audio = np.array([1.0, 2.0, 3.0])
    assert metrics.match_share(audio, np.array([1.04, 2.1]), fps=25) == pytest.approx(1 / 3)
    assert metrics.match_share(audio, np.array([1.04, 2.04, 2.96]), fps=25) == 1.0
    assert np.isnan(metrics.match_share(np.zeros(0), audio, fps=25))
    # +-40 ms windows: [0.96, 1.04] and [1.0, 1.08] overlap, [2.96, 3.0] is cut at the end
    chance = metrics.match_chance(np.array([1.0, 1.04, 3.0]), fps=25, duration=3.0)
    assert chance == pytest.approx((0.12 + 0.04) / 3.0)


@pytest.mark.parametrize(("fps", "period", "t0"), [(25.0, 0.52, 0.13), (12.0, 0.9, 0.2)])
def test_visual_contacts_on_a_bouncing_ball(fps: float, period: float, t0: float) -> None:
    frames, contacts = render_ball(fps=fps, n=int(2.6 * fps), period=period, t0=t0)
    events = motion.visual_events(frames, fps)
    assert len(contacts) >= 2
    assert np.abs(events[:, None] - contacts[None]).min(axis=0).max() <= 1 / fps  # all found
    assert np.abs(events[:, None] - contacts[None]).min(axis=1).max() <= 1 / fps  # no extras
    assert metrics.match_share(contacts, events, fps=fps) == 1.0


def test_static_video_has_no_events() -> None:
    frames = np.full((20, 32, 48, 3), 128, np.uint8)
    assert len(motion.visual_events(frames, 25.0)) == 0
    assert np.all(motion.flow_magnitude(motion.block_flow(frames)) == 0)


def test_block_flow_finds_a_translation() -> None:
    rng = np.random.default_rng(2)
    big = (rng.uniform(0, 255, (80, 120, 3))).astype(np.uint8)
    frames = np.stack([big[10 - 2 * k : 58 - 2 * k, 20 + 3 * k : 84 + 3 * k] for k in range(4)])
    flow = motion.block_flow(frames)  # content moves down 2 and left 3 px per frame
    inner = flow[:, 2:-2, 2:-2]
    assert np.allclose(np.median(inner[..., 0]), 2, atol=0.1)
    assert np.allclose(np.median(inner[..., 1]), -3, atol=0.1)


def test_onsets_refined_onto_one_attack_are_merged(tmp_path: Path) -> None:
    """AVSynth test clip 1 (recorded one-shots, AAC as `avlink synth` writes it) has onsets one
    hop apart that refine onto the same attack (0.05, 0.95 and 0.18 ms apart unmerged)."""
    from avlink_cli import media
    from avlink_cli.synth import synth_split

    (clip,) = [p for p in synth_split(tmp_path, split="test", count=2, workers=1) if "01" in p.name]
    y = media.read_audio(clip, sample_rate=SR).astype(np.float64)
    on = onsets.onset_detect(y, delta=0.07) * onsets.HOP
    unmerged = metrics.refine_onsets(y, on, merge=0.0)
    attacks = metrics.refine_onsets(y, on)
    assert np.diff(np.sort(unmerged)).min() < 0.001  # the duplicates are there
    assert np.diff(attacks).min() >= metrics.MERGE_S and len(attacks) == len(unmerged) - 3
    # each merged attack is one that the unmerged list had
    assert set(np.round(attacks, 6)) <= set(np.round(unmerged, 6))
