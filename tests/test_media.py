"""media.py on real files: generated clips (conftest.make_clip) and real footage (fixtures/)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import frame_times, packet_md5s, run_ffmpeg

from avlink_cli import media
from avlink_cli.media import MediaError, OutputExistsError


def peak_hz(wav: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / sr)[spec.argmax()])


def band_level(wav: np.ndarray, sr: int, hz: float) -> float:
    """Spectral magnitude near hz relative to the spectrum's peak."""
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    freqs = np.fft.rfftfreq(len(wav), 1 / sr)
    return float(spec[np.abs(freqs - hz) < 20].max() / spec.max())


# ------------------------------------------------------------------------------------ probe


@pytest.mark.parametrize("rate", ["24000/1001", "25", "30000/1001", "60"])
def test_probe_and_decode_counts_at_common_rates(make_clip, rate):
    clip = make_clip(fps=rate, duration=1.5, audio_rate=48_000)
    info = media.probe(clip)
    fps = float(Fraction(rate))
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(fps, rel=1e-6)
    assert abs(info.n_frames - 1.5 * fps) <= 1
    assert info.duration == pytest.approx(info.n_frames / fps, abs=1e-6)
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    for target in (6.0, 25.0, 29.97):
        frames = media.read_video(clip, fps=target, size=(36, 64))
        assert frames.shape[1:] == (36, 64, 3) and frames.dtype == np.uint8
        assert abs(len(frames) - info.duration * target) <= 1
    wav = media.read_audio(clip, sample_rate=16_000)
    assert abs(len(wav) / 16_000 - info.audio_duration) < 0.010


def test_probe_real_footage(fixtures_dir):
    bbb = media.probe(fixtures_dir / "bigbuckbunny_2s.mp4")
    assert (bbb.fps, bbb.n_frames, bbb.width, bbb.height) == (25.0, 50, 320, 180)
    assert (bbb.sample_rate, bbb.channels) == (48_000, 6)
    car = media.probe(fixtures_dir / "carphone_2s.mp4")
    assert car.fps == pytest.approx(30000 / 1001) and car.n_frames == 60 and not car.has_audio
    assert car.sar == pytest.approx(128 / 117) and car.display_hw == (144, 193)


def test_decode_real_footage(fixtures_dir):
    bbb = fixtures_dir / "bigbuckbunny_2s.mp4"
    info = media.probe(bbb)
    frames = media.read_video(bbb, fps=8, size=(36, 64))
    assert abs(len(frames) - info.duration * 8) <= 1 and frames.std() > 10
    wav = media.read_audio(bbb, sample_rate=16_000)
    assert abs(len(wav) / 16_000 - info.audio_duration) < 0.010
    assert np.abs(wav).max() > 0.01  # the 5.1 downmix is not silent
    car = media.read_video(fixtures_dir / "carphone_2s.mp4", fps=29.97, size=(72, 96))
    assert abs(len(car) - 2.002 * 29.97) <= 1


# ------------------------------------------------------------------------------------ video


def decoded_index(frames: np.ndarray) -> np.ndarray:
    """Source frame number (mod 30) of frames from an "index" clip (grey level N * 7 + 16)."""
    grey = frames[:, :, :, 1].reshape(len(frames), -1).mean(1)
    return np.round((grey * 219 / 255) / 7).astype(int)  # limited-range Y back from RGB


@pytest.mark.parametrize("vfr", [False, True])
@pytest.mark.parametrize(("fps", "start"), [(10.0, 0.0), (7.0, 0.33), (60.0, 0.1)])
def test_frames_are_sampled_by_timestamp(make_clip, vfr, fps, start):
    """Frame k of the output is the source frame on screen at start + k / fps."""
    clip = make_clip(fps=25, duration=1.2, pattern="index", vfr=vfr, lossless=True)
    times = np.array(frame_times(clip))
    frames = media.read_video(clip, fps=fps, size=(16, 16), start=start)
    info = media.probe(clip)
    assert abs(len(frames) - (info.duration - start) * fps) <= 1
    t = start + np.arange(len(frames)) / fps
    expected = (np.searchsorted(times, t + 1e-9, side="right") - 1) % 30
    np.testing.assert_array_equal(decoded_index(frames), expected)


def test_iter_video_streams_chunks(make_clip):
    clip = make_clip(fps=30, duration=2.0, pattern="index")
    chunks = list(media.iter_video(clip, fps=30, size=(8, 8), chunk_frames=7))
    assert [len(c) for c in chunks] == [7] * 8 + [4]
    whole = media.read_video(clip, fps=30, size=(8, 8))
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    it = media.iter_video(clip, fps=30, size=(8, 8), chunk_frames=4)
    next(it)
    it.close()  # stopping early must not hang or leave ffmpeg running


def test_window_has_exact_length(make_clip):
    clip = make_clip(fps=25, duration=2.0, pattern="index", lossless=True)
    frames = media.read_video(clip, fps=10, size=(8, 8), start=0.5, duration=1.0)
    assert len(frames) == 10
    assert decoded_index(frames)[0] == 12  # 0.5 s at 25 fps


def test_resize_scales_short_side_and_centre_crops(make_clip):
    # 4:3 source with red outer twentieths: a square target crops them away (centre crop).
    clip = make_clip(fps=10, size=(160, 120), pattern="bars", lossless=True)
    square = media.read_video(clip, fps=10, size=(32, 32))
    assert square[..., 0].max() < 40 and square[..., 1].mean() > 200
    wide = media.read_video(clip, fps=10, size=(30, 40))  # same aspect: bars kept, scaled
    assert wide[:, :, 0, 0].mean() > 200 and wide[:, :, 20, 1].mean() > 200


def test_odd_size_and_rotation(make_clip):
    odd = make_clip(fps=25, size=(177, 101))
    info = media.probe(odd)
    assert (info.width, info.height) == (177, 101)
    assert media.read_video(odd, fps=5, size=(36, 64)).shape[1:] == (36, 64, 3)
    # Top half red, bottom half blue, flagged to be shown turned 90 degrees counter-clockwise:
    # the decoded frames are portrait with red on the left.
    rot = make_clip(fps=10, size=(64, 32), pattern="halves", rotate=90, lossless=True)
    info = media.probe(rot)
    assert info.rotation == 270 and info.display_hw == (64, 32)
    frames = media.read_video(rot, fps=10, size=(64, 32)).astype(int)
    assert frames[:, :, :12, 0].mean() > 200 and frames[:, :, :12, 2].mean() < 40
    assert frames[:, :, -12:, 2].mean() > 200 and frames[:, :, -12:, 0].mean() < 40


# ------------------------------------------------------------------------------------ audio


@pytest.mark.parametrize("rate", [8_000, 16_000, 44_100, 48_000])
@pytest.mark.parametrize(
    ("layout", "ext"), [("mono", ".wav"), ("stereo", ".flac"), ("5.1", ".m4a")]
)
def test_read_audio_rates_and_layouts(make_clip, rate, layout, ext):
    clip = make_clip(fps=None, audio_rate=rate, layout=layout, ext=ext, freq=440.0, duration=1.0)
    info = media.probe(clip)
    assert not info.has_video and (info.sample_rate, info.channels) == (
        rate,
        {"mono": 1, "stereo": 2, "5.1": 6}[layout],
    )
    wav = media.read_audio(clip, sample_rate=16_000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) / 16_000 - info.duration) < 0.010
    assert abs(len(wav) / 16_000 - 1.0) < 0.010
    assert peak_hz(wav, 16_000) == pytest.approx(440, abs=3)
    assert 0.05 < np.abs(wav).max() <= 1.0


def test_read_audio_window(make_clip):
    clip = make_clip(fps=None, audio_rate=44_100, ext=".wav", duration=2.0)
    full = media.read_audio(clip, sample_rate=16_000)
    part = media.read_audio(clip, sample_rate=16_000, start=0.5, duration=0.25)
    assert len(part) == 4_000
    # the resampler restarts at the window: compare away from its edges
    np.testing.assert_allclose(part[32:-32], full[8_032:11_968], atol=2e-3)
    tail = media.read_audio(clip, sample_rate=16_000, start=1.9, duration=0.5)
    assert len(tail) == 8_000 and np.abs(tail[2_000:]).max() == 0  # zero past the end


def test_write_audio_round_trip(tmp_path):
    sr = 16_000
    wav = (0.5 * np.sin(2 * np.pi * 300 * np.arange(sr) / sr)).astype(np.float32)
    for ext in (".wav", ".flac"):
        media.write_audio(tmp_path / f"a{ext}", wav, sr)
        back, back_sr = sf.read(tmp_path / f"a{ext}", dtype="float32")
        assert back_sr == sr and np.abs(back - wav).max() < 1e-3
    with pytest.raises(OutputExistsError, match="a.wav: already exists"):
        media.write_audio(tmp_path / "a.wav", wav * 0, sr)
    assert np.abs(sf.read(tmp_path / "a.wav")[0]).max() > 0.4  # untouched
    media.write_audio(tmp_path / "a.wav", wav * 0, sr, overwrite=True)
    assert np.abs(sf.read(tmp_path / "a.wav")[0]).max() == 0
    with pytest.raises(MediaError, match=r"a\.ogg.*\.wav or \.flac"):
        media.write_audio(tmp_path / "a.ogg", wav, sr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.flac", "a.wav"]


# ------------------------------------------------------------------------------------ mux


def sine(hz: float, seconds: float, sr: int = 16_000, amp: float = 0.4) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * hz * np.arange(round(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize(("ext", "seconds"), [(".mp4", 0.7), (".mkv", 3.0), (".mov", 1.5)])
def test_mux_copies_video_and_fits_audio(make_clip, tmp_path, ext, seconds):
    clip = make_clip(fps="30000/1001", duration=1.5, audio_rate=44_100, size=(96, 64))
    info = media.probe(clip)
    out = tmp_path / f"out{ext}"
    media.mux_audio(clip, sine(1000, seconds), 16_000, out)
    assert [m for *_, m in packet_md5s(out)] == [m for *_, m in packet_md5s(clip)]
    got = media.probe(out)
    assert abs(got.duration - info.duration) <= 1 / info.fps
    assert abs(got.audio_duration - info.duration) < 0.010
    wav = media.read_audio(out, sample_rate=16_000)
    # Matroska keeps no AAC end trim: a player may add up to one AAC frame of padding there.
    slack = 0.010 if ext != ".mkv" else 1024 / 16_000
    assert -0.010 < len(wav) / 16_000 - info.duration < slack
    assert peak_hz(wav, 16_000) == pytest.approx(1000, abs=5)  # ours, not the 440 Hz original


def test_mux_keeps_rotation_and_real_footage(make_clip, fixtures_dir, tmp_path):
    rot = make_clip(fps=10, size=(64, 32), pattern="halves", rotate=90)
    media.mux_audio(rot, sine(500, 1.0), 16_000, tmp_path / "rot.mp4")
    assert media.probe(tmp_path / "rot.mp4").rotation == 270
    bbb = fixtures_dir / "bigbuckbunny_2s.mp4"
    media.mux_audio(bbb, sine(500, 1.0), 16_000, tmp_path / "bbb.mp4")
    assert packet_md5s(tmp_path / "bbb.mp4") == packet_md5s(bbb)


def test_mix_original_contains_both(make_clip, tmp_path):
    clip = make_clip(fps=25, duration=1.0, audio_rate=48_000, layout="stereo", freq=440.0)
    media.mux_audio(clip, sine(1500, 1.0), 16_000, tmp_path / "mix.mp4", mix_original=0.8)
    media.mux_audio(clip, sine(1500, 1.0), 16_000, tmp_path / "dry.mp4")
    mix = media.read_audio(tmp_path / "mix.mp4", sample_rate=16_000)
    dry = media.read_audio(tmp_path / "dry.mp4", sample_rate=16_000)
    assert band_level(mix, 16_000, 1500) > 0.2 and band_level(mix, 16_000, 440) > 0.2
    assert band_level(dry, 16_000, 1500) == 1.0 and band_level(dry, 16_000, 440) < 0.01
    silent = make_clip(fps=25, duration=1.0)
    with pytest.raises(MediaError, match="no soundtrack"):
        media.mux_audio(silent, sine(1500, 1.0), 16_000, tmp_path / "x.mp4", mix_original=1.0)
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------------------ encode


def test_write_video_odd_size_with_audio(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 101, 177, 3), dtype=np.uint8), 30, axis=0)
    frames[:, :50] = 200  # a flat block survives H.264 almost exactly
    out = tmp_path / "v.mp4"
    media.write_video(out, frames, 24.0, audio=sine(700, 2.0), sample_rate=16_000)
    info = media.probe(out)
    assert (info.width, info.height, info.n_frames, info.fps) == (178, 102, 30, 24.0)
    assert info.duration == pytest.approx(1.25) and abs(info.audio_duration - 1.25) < 0.010
    text = run_ffmpeg("-i", str(out), "-map", "0:v", "-c", "copy", "-f", "framecrc", "-")
    assert "#codec_id 0: h264" in text
    back = media.read_video(out, fps=24.0, size=(102, 178))
    assert np.abs(back[:, 5:45, 5:170].astype(int) - 200).mean() < 3
    wav = media.read_audio(out, sample_rate=16_000)
    assert abs(len(wav) - 20_000) < 160 and peak_hz(wav, 16_000) == pytest.approx(700, abs=5)


def test_write_video_from_chunks(tmp_path):
    chunks = (np.full((10, 32, 48, 3), 16 * i, np.uint8) for i in range(5))
    out = tmp_path / "c.mkv"
    media.write_video(out, chunks, 10.0, audio=sine(300, 1.0), sample_rate=16_000)
    info = media.probe(out)
    assert info.n_frames == 50 and info.duration == pytest.approx(5.0)
    assert abs(info.audio_duration - 5.0) < 0.010


def test_failed_write_leaves_nothing(tmp_path):
    def broken():
        yield np.zeros((5, 16, 16, 3), np.uint8)
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        media.write_video(tmp_path / "x.mp4", broken(), 10.0)
    with pytest.raises(ValueError):
        media.write_video(tmp_path / "x.mp4", np.zeros((5, 16, 16), np.uint8), 10.0)
    with pytest.raises(MediaError, match="x.avi"):
        media.write_video(tmp_path / "x.avi", np.zeros((5, 16, 16, 3), np.uint8), 10.0)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ bad input


def bad_inputs(tmp_path: Path, make_clip) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 20)
    (tmp_path / "folder.mp4").mkdir()
    good = make_clip(fps=25, duration=2.0, size=(320, 240), audio_rate=44_100)
    data = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov at the end: lost
    faststart = tmp_path / "fs.mp4"
    run_ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    (tmp_path / "cut_fs.mp4").write_bytes(data[: len(data) // 2])  # header kept, data lost
    return {
        "missing": (tmp_path / "nope.mp4", "no such file"),
        "folder": (tmp_path / "folder.mp4", "is a folder"),
        "empty": (tmp_path / "empty.mp4", "empty file"),
        "text": (tmp_path / "text.mp4", "not a media file"),
        "truncated": (tmp_path / "cut.mp4", "not a media file"),
        "truncated_faststart": (tmp_path / "cut_fs.mp4", "truncated or corrupt"),
    }


def test_bad_inputs_raise_one_line_media_error(tmp_path, make_clip):
    for path, problem in bad_inputs(tmp_path, make_clip).values():
        for read in (media.probe, lambda p: media.read_audio(p, sample_rate=16_000)):
            with pytest.raises(MediaError) as e:
                read(path)
            msg = str(e.value)
            assert "\n" not in msg and msg.startswith(str(path)), msg
            if read is media.probe:
                assert problem in msg
    with pytest.raises(MediaError, match="has no audio stream"):
        media.read_audio(make_clip(fps=25), sample_rate=16_000)
    with pytest.raises(MediaError, match="has no video stream"):
        media.read_video(make_clip(fps=None, audio_rate=16_000, ext=".wav"), fps=5, size=(8, 8))


def test_unwritable_destination(tmp_path, make_clip):
    (tmp_path / "file").write_text("x")
    with pytest.raises(MediaError, match="cannot write"):
        media.write_audio(tmp_path / "file" / "sub" / "a.wav", np.zeros(100), 16_000)
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(MediaError, match="d.wav: is a folder"):
        media.write_audio(tmp_path / "d.wav", np.zeros(100), 16_000)


# ------------------------------------------------------------------------------------ hostile names

HOSTILE = ["concat:strike.mp4|clap.mp4", "|", "-i.mp4", "with space.mp4", "ünï côdé 日本.mp4"]


@pytest.mark.parametrize("name", HOSTILE)
def test_names_reach_ffmpeg_as_paths(make_clip, tmp_path, monkeypatch, name):
    """A name someone else chose is only a name: ffmpeg's protocols (concat:, pipe:, ...) and
    options never apply to it, read or written, relative or absolute."""
    clip = make_clip(fps=25, duration=1.0, size=(48, 32), audio_rate=16_000, freq=880.0)
    for decoy in ("strike.mp4", "clap.mp4"):  # what `concat:` would read instead
        (tmp_path / decoy).write_bytes(make_clip(fps=10, duration=2.0, size=(64, 64)).read_bytes())
    (tmp_path / name).write_bytes(clip.read_bytes())
    monkeypatch.chdir(tmp_path)
    for path in (Path(name), tmp_path / name):
        info = media.probe(path)
        assert (info.n_frames, info.width, info.height, info.sample_rate) == (25, 48, 32, 16_000)
        assert len(media.read_video(path, fps=25, size=(32, 48))) == 25
        assert peak_hz(media.read_audio(path, sample_rate=16_000), 16_000) == pytest.approx(880)
    out = Path("out " + name if name.endswith(".mp4") else name + ".mp4")
    media.mux_audio(Path(name), sine(1000, 1.0), 16_000, out)
    assert packet_md5s(tmp_path / out) == packet_md5s(clip)
    media.mux_input_audio(out, Path(name), Path("x" + out.name), duration=1.0, overwrite=False)
    assert packet_md5s(tmp_path / ("x" + out.name)) == packet_md5s(clip)


def test_a_name_cannot_fake_streams(make_clip, tmp_path):
    """ffmpeg prints the file name in its input summary; only its stream lines are read."""
    wav = tmp_path / "take 1, Video: h264, 640x480 [SAR 1:1].wav"
    wav.write_bytes(make_clip(fps=None, audio_rate=16_000, ext=".wav").read_bytes())
    info = media.probe(wav)
    assert not info.has_video and info.has_audio and (info.width, info.height) == (0, 0)


@pytest.mark.parametrize("size", [(2, 2), (1, 1), (3, 2)])
def test_any_size_ffmpeg_reads_is_accepted(make_clip, size):
    clip = make_clip(fps=10, duration=1.0, size=size, pattern="testsrc")
    info = media.probe(clip)
    assert (info.width, info.height, info.n_frames) == (*size, 10)
    frames = media.read_video(clip, fps=8, size=(16, 16))  # the tiny preset's frames
    assert frames.shape == (8, 16, 16, 3)


@pytest.mark.parametrize(("layout", "channels"), [("stereo", 2), ("5.1", 6), ("7.1", 8)])
def test_input_audio_is_muxed_as_it_came(make_clip, tmp_path, layout, channels):
    """animate's output carries the input's sound with its channels (AAC: up to 8), at the rate
    every video output gets (media.sound: VIDEO_RATE)."""
    src = make_clip(fps=None, audio_rate=44_100, layout=layout, ext=".wav", duration=1.0)
    assert media.probe(src).channels == channels
    silent = tmp_path / "silent.mp4"
    media.write_video(silent, np.full((8, 16, 16, 3), 99, np.uint8), 8.0)
    out = tmp_path / "out.mp4"
    media.mux_input_audio(silent, src, out, duration=1.0, overwrite=False)
    info = media.probe(out)
    assert (info.channels, info.sample_rate) == (channels, media.VIDEO_RATE)
    assert abs(info.audio_duration - 1.0) < 0.03


def test_more_channels_than_aac_holds_become_7_1(tmp_path):
    src = tmp_path / "atmos.wav"  # 10 channels: ffmpeg reads the layout as 5.1.4
    sf.write(src, np.tile(sine(440, 1.0, sr=48_000)[:, None], (1, 10)), 48_000)
    assert media.probe(src).channels == 10
    silent = tmp_path / "silent.mp4"
    media.write_video(silent, np.full((8, 16, 16, 3), 99, np.uint8), 8.0)
    media.mux_input_audio(silent, src, tmp_path / "out.mp4", duration=1.0, overwrite=False)
    assert media.probe(tmp_path / "out.mp4").channels == 8
