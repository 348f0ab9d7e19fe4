"""``evaluate.run_eval`` on folders written by the test: V2A against references and sidecars
(drum hits, shifted copies), A2V on a rendered bouncing ball with its contact sounds, plots."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_metrics import SR, drum_clip, hit_times, place, render_ball

from avlink_cli import evaluate, media, plots


def read_png(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 from an unfiltered 8-bit RGB PNG like plots.encode_png writes."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    return (
        np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w * 3 + 1)[:, 1:].reshape(h, w, 3)
    )


def has_color(img: np.ndarray, color: tuple[int, int, int]) -> bool:
    return bool(np.all(img == np.array(color, np.uint8), axis=-1).any())


def write_events(path: Path, times: np.ndarray) -> None:
    path.write_text(json.dumps({"events": [{"time": float(t), "kind": "hit"} for t in times]}))


def test_match_stem() -> None:
    keys = ["clip1", "clip10", "clip1.v2"]
    assert evaluate.match_stem("clip1.dubbed", keys) == "clip1"
    assert evaluate.match_stem("clip10_dubbed", keys) == "clip10"
    assert evaluate.match_stem("clip1.v2.dubbed", keys) == "clip1.v2"
    assert evaluate.match_stem("clip1-x", keys) == "clip1"
    assert evaluate.match_stem("clip100", keys) is None


def test_v2a_against_references_and_sidecars(tmp_path: Path) -> None:
    ref_dir, gen_dir, plot_dir = tmp_path / "ref", tmp_path / "gen", tmp_path / "plots"
    ref_dir.mkdir(), gen_dir.mkdir()
    for name, shift in (("near", 0.03), ("far", 0.2)):
        media.write_audio(ref_dir / f"{name}.wav", drum_clip()[0], SR)
        media.write_audio(gen_dir / f"{name}.dubbed.wav", drum_clip(shift)[0], SR)
        write_events(ref_dir / f"{name}.json", hit_times(8))  # found beside the references
    out = evaluate.run_eval(gen_dir, reference=ref_dir, plot_dir=plot_dir, mode="v2a")
    clips = {c["name"]: c for c in out["clips"]}
    near, far = clips["near.dubbed"], clips["far.dubbed"]
    assert (near["onset_acc"], near["onset_ap"]) == (1.0, 1.0)
    assert far["onset_acc"] == 0.0
    assert near["timing_bias_ms"] == pytest.approx(30, abs=6)
    assert near["timing_bt1359_share"] == 1.0 and near["timing_missed"] == 0
    assert far["timing_bt1359_share"] == 0.0  # 200 ms late is past the 125 ms limit
    s = out["summary"]
    assert s["n_clips"] == 2 and s["onset_acc"] == 0.5 and s["onset_acc_clips"] == 2
    assert s["timing_events"] == 16 and s["timing_bt1359_share"] == 0.5
    assert s["onsets_per_event"] == pytest.approx(1.0, abs=0.13)  # one onset a hit, no extras
    json.dumps(out)  # records are plain JSON

    img = read_png(plot_dir / "near.dubbed.png")
    assert img.shape[1] == 1200
    for color in (plots.WAVE, plots.GEN_ONSET, plots.REF_ONSET, plots.TRUE_EVENT):
        assert has_color(img, color)


def test_v2a_audio_fd_against_the_references(tmp_path: Path) -> None:
    """Real one-shots (sonic-pi) as references; generated sets: the same hits shifted in time
    (real sound) and white noise. The audio FD must tell them apart, against its floor."""
    ref_dir, good_dir, noise_dir = tmp_path / "ref", tmp_path / "good", tmp_path / "noise"
    for d in (ref_dir, good_dir, noise_dir):
        d.mkdir()
    rng = np.random.default_rng(0)
    for i, shift in enumerate((0.0, 0.02, 0.05, 0.08, 0.11, 0.14)):
        wav = drum_clip(shift)[0]
        media.write_audio(ref_dir / f"c{i}.wav", wav * (0.5 + 0.1 * i), SR)
        media.write_audio(good_dir / f"c{i}.wav", drum_clip(shift + 0.03)[0], SR)
        media.write_audio(noise_dir / f"c{i}.wav", rng.normal(0, 0.05, len(wav)), SR)
    good = evaluate.run_eval(good_dir, reference=ref_dir, mode="v2a")["summary"]
    noise = evaluate.run_eval(noise_dir, reference=ref_dir, mode="v2a")["summary"]
    assert good["audio_fd_clips"] == 6 and good["audio_fd_floor"] == noise["audio_fd_floor"]
    assert noise["audio_fd"] > 10 * good["audio_fd"]
    assert noise["audio_fd_half"] > 10 * good["audio_fd_floor"]


def test_a2v_bouncing_ball(tmp_path: Path) -> None:
    fps = 25.0
    frames, contacts = render_ball(fps=fps, n=60, period=0.52, t0=0.13)
    names = ["drum_snare_hard", "tabla_na", "drum_cowbell", "drum_heavy_kick"] * 2
    audio = place(names[: len(contacts)], contacts, 2.4)
    gen = tmp_path / "gen"
    gen.mkdir()
    media.write_video(gen / "ball.mp4", frames, fps, audio=audio, sample_rate=SR)
    sidecars = tmp_path / "truth"
    sidecars.mkdir()
    write_events(sidecars / "ball.json", contacts)

    out = evaluate.run_eval(gen, sidecars=sidecars, plot_dir=tmp_path / "plots", mode="a2v")
    clip = out["clips"][0]
    assert clip["match_share"] == 1.0
    assert clip["visual_timing_missed"] == 0 and clip["visual_timing_median_ms"] <= 1000 / fps
    assert 0.0 <= clip["av_align"]
    assert "onset_acc" not in clip and "timing_median_ms" not in clip  # a2v: video metrics
    # without sidecars the audio's own onsets are the events to match
    out = evaluate.run_eval(gen, mode="auto")
    assert out["clips"][0]["match_share"] == 1.0
    img = read_png(tmp_path / "plots" / "ball.png")
    assert has_color(img, plots.CONTACT) and has_color(img, plots.MOTION)


def test_run_eval_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no audio or video"):
        evaluate.run_eval(tmp_path)
    media.write_audio(tmp_path / "a.wav", np.zeros(SR), SR)
    with pytest.raises(ValueError, match="v2a needs"):
        evaluate.run_eval(tmp_path, mode="v2a")
    with pytest.raises(ValueError, match="mode"):
        evaluate.run_eval(tmp_path, mode="x")  # type: ignore[arg-type]


def test_a2v_against_true_videos_realism_and_sync_three_ways(tmp_path: Path) -> None:
    """The true render scored as a generated video: realism ratios 1, the sync score equals
    its ceiling. A noise video with the same sound fails the realism check, and its sync score
    is flagged, not reported as sync."""
    fps = 25.0
    frames, contacts = render_ball(fps=fps, n=60, period=0.52, t0=0.13)
    names = ["drum_snare_hard", "tabla_na", "drum_cowbell", "drum_heavy_kick"] * 2
    audio = place(names[: len(contacts)], contacts, 2.4)
    ref, same, noise = tmp_path / "ref", tmp_path / "same", tmp_path / "noise"
    for d in (ref, same, noise):
        d.mkdir()
    media.write_video(ref / "ball.mp4", frames, fps, audio=audio, sample_rate=SR)
    media.write_video(same / "ball.animated.mp4", frames, fps, audio=audio, sample_rate=SR)
    rng = np.random.default_rng(0)
    media.write_video(
        noise / "ball.animated.mp4",
        rng.integers(0, 256, frames.shape, dtype=np.uint8),
        fps,
        audio=audio,
        sample_rate=SR,
    )
    write_events(ref / "ball.json", contacts)

    good = evaluate.run_eval(same, reference=ref, mode="a2v")["summary"]
    assert good["realism_pass"] and good["sync_valid"]
    assert abs(good["realism_frame_change_ratio"] - 1) < 0.05
    assert abs(good["realism_detail_ratio"] - 1) < 0.05
    assert good["match_share_true"] == 1.0 and good["sync_normalised"] == 1.0
    assert "sync_note" not in good

    bad = evaluate.run_eval(noise, reference=ref, mode="a2v")["summary"]
    assert not bad["realism_pass"] and not bad["sync_valid"]
    assert bad["realism_frame_change_ratio"] > 10 and "not a sync score" in bad["sync_note"]
