"""The sound dub writes (media.sound), decoded back with the bundled ffmpeg: rate, channels,
peak after AAC, loudness, and what happens to an input's own soundtrack.

"Loud" input is real recorded sound (the packaged sonic-pi one-shots) pushed 12 dB past full
scale and hard-clipped, as a vocoder's worst output is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ffmpeg_exe, packet_md5s, run_ffmpeg

from avlink_cli import media
from avlink_cli.media import sound

ONESHOTS = Path(__file__).resolve().parent.parent / "avlink_cli" / "assets" / "oneshots"
CEILING = 10 ** (sound.CEILING_DBTP / 20)


def decode(path: Path, stream: int = 0) -> tuple[np.ndarray, int]:
    """One audio stream at its own rate and channels: (S, C) float32 and the rate."""
    info = media.probe(path)
    head = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True)
    lines = [ln for ln in head.stderr.decode().splitlines() if "Audio:" in ln]
    rate = int(lines[stream].split(" Hz")[0].rsplit(" ", 1)[-1])
    cmd = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", f"0:a:{stream}", "-f", "f32le"]
    raw = subprocess.run([*cmd, "-"], capture_output=True, check=True).stdout
    channels = 1 if "mono" in lines[stream] else 2 if "stereo" in lines[stream] else info.channels
    return np.frombuffer(raw, np.float32).reshape(-1, channels), rate


def recording(names: list[str], seconds: float, rate: int = 16_000, gain: float = 4.0):
    """Real one-shots laid one after another, mono at `rate`, `gain` times louder, clipped."""
    out = np.zeros(round(seconds * rate), np.float32)
    for k, name in enumerate(names):
        wav = media.read_audio(ONESHOTS / f"{name}.flac", sample_rate=rate)
        at = round(k * seconds / len(names) * rate)
        n = min(len(wav), len(out) - at)
        out[at : at + n] += wav[:n]
    return np.clip(gain * out, -1.0, 1.0)


@pytest.fixture(scope="module")
def loud() -> np.ndarray:
    wav = recording(
        ["drum_heavy_kick", "drum_snare_hard", "perc_impact1", "drum_cymbal_closed"], 2.0
    )
    assert (np.abs(wav) >= 1.0).sum() > 50  # it really is hard-clipped
    return wav


def test_video_gets_48k_stereo_under_full_scale_at_target_loudness(make_clip, tmp_path, loud):
    clip = make_clip(fps=25, duration=2.0)
    out = tmp_path / "out.mp4"
    written = media.mux_audio(clip, loud, 16_000, out)
    assert packet_md5s(out) == packet_md5s(clip)  # video stream still copied
    wav, rate = decode(out)
    assert rate == 48_000 and wav.shape[1] == 2 and written.sample_rate == 48_000
    assert np.abs(wav[:, 0] - wav[:, 1]).max() < 0.01  # the generated mono on both channels
    assert np.abs(wav).max() < sound.AAC_PEAK  # decoded AAC: under full scale
    # the limiter takes the clipped peaks down; the loudness ends near the target
    assert abs(sound.measure_loudness(out) - sound.TARGET_LUFS) < 2.0


def test_quiet_and_silent_generated_sound(make_clip, tmp_path):
    clip = make_clip(fps=25, duration=2.0)
    quiet = recording(["perc_snap", "elec_tick"], 2.0, gain=0.01)  # about -50 LUFS
    w = media.mux_audio(clip, quiet, 16_000, tmp_path / "q.mkv")
    assert w.gain_db == sound.MAX_BOOST_DB  # raised, but by at most 20 dB: no roaring floor
    w = media.mux_audio(clip, np.zeros(32_000), 16_000, tmp_path / "s.mkv")
    assert w.loudness_lufs is None and w.gain_db == 0.0
    assert np.abs(decode(tmp_path / "s.mkv")[0]).max() == 0.0


def test_audio_files_keep_the_model_rate_unless_asked(make_clip, tmp_path, loud):
    clip = make_clip(fps=25, duration=2.0)
    media.mux_audio(clip, loud, 16_000, tmp_path / "a.wav")
    info = sf.info(tmp_path / "a.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
    assert np.abs(sf.read(tmp_path / "a.wav")[0]).max() <= CEILING + 0.01
    media.mux_audio(clip, loud, 16_000, tmp_path / "b.flac", sample_rate=44_100)
    assert sf.info(tmp_path / "b.flac").samplerate == 44_100


@pytest.fixture
def stereo_clip(make_clip, tmp_path) -> Path:
    """A video with its own real stereo 44.1 kHz soundtrack: a kick left, a snare right."""
    left = recording(["drum_heavy_kick"], 2.0, rate=44_100, gain=1.0)
    right = recording(["drum_snare_hard"], 2.0, rate=44_100, gain=1.0)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 44_100)
    out = tmp_path / "with_sound.mp4"
    video = make_clip(fps=25, duration=2.0)
    run_ffmpeg("-i", str(video), "-i", str(tmp_path / "st.wav"), "-map", "0:v", "-map", "1:a",
               "-c:v", "copy", "-c:a", "aac", "-b:a", "192k", str(out))  # fmt: skip
    return out


def test_mix_keeps_the_originals_rate_and_channels(stereo_clip, tmp_path, loud):
    out = tmp_path / "mix.mp4"
    w = media.mux_audio(stereo_clip, loud, 16_000, out, mix_original=0.5)
    wav, rate = decode(out)
    assert (rate, wav.shape[1]) == (44_100, 2) == (w.sample_rate, w.channels)
    assert np.abs(wav).max() < sound.AAC_PEAK
    # the original's stereo picture survives: the kick's low end is left, the snare's right
    orig, _ = decode(stereo_clip)
    n = min(len(orig), len(wav))
    side = lambda x: float(np.abs(x[:n, 0] - x[:n, 1]).mean())  # noqa: E731
    assert side(wav) > 0.3 * 0.5 * side(orig)
    # and the generated sound is in it too: the mix differs from the original alone
    assert np.abs(wav[:n].mean(1) - 0.5 * orig[:n].mean(1)).max() > 0.1


def test_keep_puts_the_original_on_a_second_track(stereo_clip, tmp_path, loud):
    out = tmp_path / "keep.mp4"
    media.mux_audio(stereo_clip, loud, 16_000, out, original="keep")
    gen, rate0 = decode(out, 0)
    orig, rate1 = decode(out, 1)
    assert (rate0, gen.shape[1], rate1, orig.shape[1]) == (48_000, 2, 44_100, 2)
    assert packet_md5s(out, "a:1") == packet_md5s(stereo_clip, "a:0")  # copied untouched
    with pytest.raises(media.MediaError, match="keep needs"):
        media.mux_audio(stereo_clip, loud, 16_000, tmp_path / "k.wav", original="keep")
    assert not (tmp_path / "k.wav").exists()


def test_output_says_it_was_generated(make_clip, tmp_path, loud):
    out = tmp_path / "tagged.mp4"
    meta = {"comment": '{"generated":"audio","seed":7}', "avlink_generated": "audio"}
    media.mux_audio(make_clip(fps=25, duration=2.0), loud, 16_000, out, metadata=meta)
    head = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(out)], capture_output=True)
    text = head.stderr.decode()
    assert '"generated":"audio","seed":7' in text and "avlink_generated: audio" in text


def test_real_model_dub_as_a_user_runs_it(tmp_path):
    """The packaged model on an example, as real processes: 48 kHz stereo AAC under full scale,
    the same seed gives the same file, a second run skips the existing output with exit 0."""
    import json
    import os
    import sys

    repo = ONESHOTS.parent.parent.parent
    if not (repo / "weights" / "avsynth-s" / "manifest.json").is_file():
        pytest.skip("no packaged weights")
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def dub(*args: object) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "avlink_cli", "dub", repo / "examples" / "strike.mp4"]
        return subprocess.run(
            [*map(str, cmd), *map(str, args)], env=env, capture_output=True, text=True
        )

    first = dub("-o", tmp_path / "a.mp4", "--json")
    assert first.returncode == 0, first.stderr
    rec = json.loads(first.stdout)
    assert rec["sound"]["sample_rate"] == 48_000 and rec["model_sha"]
    again = dub("-o", tmp_path / "a.mp4")
    assert again.returncode == 0 and "skipped" in again.stderr and again.stdout == ""
    assert dub("-o", tmp_path / "b.mp4", "-q").returncode == 0
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    wav, rate = decode(tmp_path / "a.mp4")
    assert (rate, wav.shape[1]) == (48_000, 2) and 0.1 < np.abs(wav).max() < sound.AAC_PEAK
