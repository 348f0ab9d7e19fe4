"""The sound avlink writes: loudness, a true-peak ceiling, the rate and channels players expect,
and what happens to an input's own soundtrack.

Generation and scoring stay at the model's rate (16 kHz mono); only the written file changes.

- **Loudness.** Generated sound is brought to ``TARGET_LUFS`` (-16 LUFS integrated, ITU-R BS.1770
  as ffmpeg's ``ebur128`` measures it: the level of streaming platforms and of Apple's guidelines),
  by one gain for the whole file, raised by at most ``MAX_BOOST_DB`` so that a clip where nothing
  sounds keeps a quiet noise floor instead of having it lifted to full loudness.
- **Peaks.** A lookahead limiter at four times the output rate holds the true peak at or below
  ``CEILING_DBTP`` (-1 dBTP), in place of a hard clip. AAC's encoder can still overshoot that
  ceiling by more than a decibel on dense, clipped sound (ffmpeg's encoder: +27% on a clipped
  drum loop), so an AAC output is decoded once after writing, and when a sample reaches
  ``AAC_PEAK`` the limited sound is scaled down by the excess and encoded again: no decoded
  sample reaches full scale.
- **Rate and channels.** Video containers get AAC at ``VIDEO_RATE`` (48 kHz) in stereo (the
  generated mono on both channels); .wav and .flac keep the model's rate, mono, 16-bit PCM.
  ``sample_rate`` overrides the rate of either. ffmpeg does every resampling.
- **The input's own soundtrack** (``original``): ``replace`` (generated sound only), ``keep`` (the
  generated track first and default, the original copied as a second track), or ``mix`` (the
  original at ``mix_gain`` plus the generated sound, mixed by ffmpeg at the original's own rate
  and channels, then limited like the rest).

``metadata`` becomes container tags (``comment`` and the rest), so an output says it was made by
avlink and how. Every write is atomic (``encode.atomic_output``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from avlink_cli.files import scratch_dir

from .encode import AUDIO_SUFFIXES, VIDEO_SUFFIXES, _as_float, _fit, atomic_output
from .ffmpeg import MediaError, ffmpeg_exe, file_arg, last_line, run_captured, run_ffmpeg
from .info import MediaInfo, probe

TARGET_LUFS = -16.0
CEILING_DBTP = -1.0
MAX_BOOST_DB = 20.0
VIDEO_RATE = 48_000
SILENCE_LUFS = -70.0  # BS.1770's absolute gate: nothing measurable
AAC_PEAK = 0.99  # the highest decoded AAC sample accepted
Original = Literal["replace", "keep", "mix"]
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass(frozen=True)
class Written:
    """What a write did, for logs and --json records."""

    sample_rate: int
    channels: int
    gain_db: float  # applied to the generated sound before the limiter
    loudness_lufs: float | None  # the generated mono's, before the gain; None: silent


def measure_loudness(path: Path) -> float | None:
    """Integrated loudness (LUFS) of a file's first audio stream; None below the -70 LUFS gate."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", file_arg(path), "-map", "0:a:0"]
    rc, _, err = run_captured([*cmd, "-af", "ebur128", "-f", "null", "-"])
    text = err.decode(errors="replace")
    found = re.findall(r"I:\s+(-?[\d.]+|-inf) LUFS", text.rsplit("Summary:", 1)[-1])
    if rc != 0 or not found:
        raise MediaError(f"{path}: cannot measure loudness ({last_line(text)})")
    value = float(found[-1])
    return None if value <= SILENCE_LUFS + 0.05 else value


def gain_db(loudness: float | None) -> float:
    """The gain that brings `loudness` to TARGET_LUFS, at most MAX_BOOST_DB up."""
    return 0.0 if loudness is None else min(TARGET_LUFS - loudness, MAX_BOOST_DB)


def _limit(rate: int, trim: float = 1.0) -> str:
    """Hold true peak at CEILING_DBTP: limit at 4x the rate, then resample to `rate`; `trim`
    scales the result (AAC's overshoot, see `_write_checked`)."""
    ceiling = 10 ** (CEILING_DBTP / 20)
    return (
        f"aresample={4 * rate},alimiter=limit={ceiling:.6f}:level=0:latency=1"
        f":attack=5:release=50,aresample={rate}" + (f",volume={trim:.6f}" if trim != 1.0 else "")
    )


def _decoded_peak(path: Path) -> float:
    cmd = ["-i", file_arg(path), "-map", "0:a:0", "-f", "f32le", "pipe:1"]
    return float(
        np.abs(np.frombuffer(run_ffmpeg(cmd, path, "cannot decode audio"), np.float32)).max(
            initial=0.0
        )
    )


def _write_checked(args: Callable[[float], list[str]], tmp: Path, out: Path) -> None:
    """Run ffmpeg with args(trim) into tmp; for AAC, lower the trim until the decoded peak is
    under AAC_PEAK (each try scales by the excess, and a little more)."""
    trim = 1.0
    for _ in range(4):
        run_ffmpeg([*args(trim), file_arg(tmp)], out, "cannot write")
        if out.suffix.lower() not in VIDEO_SUFFIXES or (peak := _decoded_peak(tmp)) < AAC_PEAK:
            return
        trim *= 0.97 * AAC_PEAK / peak
    raise MediaError(f"{out}: cannot encode the sound under full scale (peak {peak:.3f})")


def _tags(metadata: dict[str, str] | None, stream: str | None = None) -> list[str]:
    flag = "-metadata" if stream is None else f"-metadata:s:{stream}"
    return [a for k, v in (metadata or {}).items() for a in (flag, f"{k}={v}")]


def _container_flags(out: Path) -> list[str]:
    """mp4/mov: index first (players start at once) and free-form tags kept."""
    if out.suffix.lower() in (".mp4", ".mov"):
        return ["-movflags", "+faststart+use_metadata_tags"]
    return []


def _audio_codec(out: Path, channels: int) -> list[str]:
    suffix = out.suffix.lower()
    if suffix == ".wav":
        return ["-c:a", "pcm_s16le"]
    if suffix == ".flac":
        return ["-c:a", "flac", "-sample_fmt", "s16"]
    return ["-c:a", "aac", "-b:a", f"{96 * max(2, channels)}k"]


def write_dub(
    video: MediaInfo,
    generated: Path,
    out: Path,
    *,
    original: Original = "replace",
    mix_gain: float = 1.0,
    sample_rate: int | None = None,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Written:
    """Write dub's output: `generated` (a WAV as long as the video) finished as the module notes
    say, muxed onto `video`'s copied video stream (.mp4/.mov/.mkv) or alone (.wav/.flac)."""
    out = Path(out)
    suffix = out.suffix.lower()
    as_video = suffix in VIDEO_SUFFIXES
    if not as_video and suffix not in AUDIO_SUFFIXES:
        raise MediaError(f"{out}: cannot write '{out.suffix}' (use .mp4/.mov/.mkv/.wav/.flac)")
    if as_video and not video.has_video:
        raise MediaError(f"{video.path}: has no video stream")
    if original != "replace" and not video.has_audio:
        raise MediaError(f"{video.path}: has no soundtrack to {original}")
    if original == "keep" and not as_video:
        raise MediaError(f"{out}: an audio file holds one track; keep needs .mp4/.mov/.mkv")
    with_original = original == "mix"
    gen_rate = probe(generated).sample_rate or VIDEO_RATE
    rate = sample_rate or (
        (video.sample_rate or VIDEO_RATE) if with_original else VIDEO_RATE if as_video else gen_rate
    )
    channels = (video.channels or 2) if with_original else 2 if as_video else 1
    layout = _LAYOUTS.get(channels, "stereo")
    channels = {v: k for k, v in _LAYOUTS.items()}[layout]
    loudness = measure_loudness(generated)
    # BS.1770 sums the channels' power: the same mono on n channels measures 10 log10(n) higher
    gain = gain_db(None if loudness is None else loudness + 10 * np.log10(channels))
    up = f"pan={layout}|" + "|".join(f"c{i}=c0" for i in range(channels))
    gen = f"volume={gain:.3f}dB,aresample={rate},{up}"
    # inputs: 0 the video (its picture, and its soundtrack for keep/mix), 1 the generated WAV
    keep = ["-c:a:1", "copy"]

    def args(trim: float) -> list[str]:
        a = ["-y", "-i", file_arg(video.path), "-i", file_arg(generated)]
        if with_original:
            orig = f"aresample={rate}:first_pts=0,aformat=channel_layouts={layout}"
            graph = (
                f"[1:a]{gen}[g];[0:a:0]{orig},volume={mix_gain}[o];"
                f"[g][o]amix=inputs=2:normalize=0:duration=first,{_limit(rate, trim)}[a]"
            )
        else:
            graph = f"[1:a]{gen},{_limit(rate, trim)}[a]"
        a += ["-filter_complex", graph]
        a += ["-map", "0:v:0", "-c:v", "copy"] if as_video else []
        a += ["-map", "[a]", *_audio_codec(out, channels)]
        if original == "keep":
            a += ["-map", "0:a:0", *keep, "-disposition:a:0", "default"]
            a += ["-disposition:a:1", "0", "-metadata:s:a:1", "title=original"]
        a += ["-metadata:s:a:0", "title=avlink (generated)"] if as_video else []
        return a + ["-map_metadata", "0", *_tags(metadata), *_container_flags(out)]

    with atomic_output(out, overwrite=overwrite) as tmp:
        try:
            _write_checked(args, tmp, out)
        except MediaError:
            if original != "keep":
                raise
            # the original's codec does not fit this container: encode it as AAC instead
            keep[:] = ["-c:a:1", "aac", "-b:a:1", "192k"]
            _write_checked(args, tmp, out)
    return Written(rate, channels, gain, loudness)


def mux_audio(
    video_path: str | os.PathLike,
    wav: np.ndarray,
    wav_rate: int,
    out_path: str | os.PathLike,
    *,
    mix_original: float | None = None,
    overwrite: bool = False,
    **kw,
) -> Written:
    """`write_dub` for a waveform in memory, (S,) float at wav_rate with sample 0 at the
    video's t = 0, padded with silence or trimmed to the video's duration. ``mix_original=g``
    mixes the video's own soundtrack in at gain g."""
    info = probe(video_path)
    wav = _fit(_as_float(wav), round(info.duration * wav_rate))
    if mix_original is not None:
        kw |= {"original": "mix", "mix_gain": mix_original}
    with scratch_dir() as td:  # claimed: removed by a later run if this one is killed
        import soundfile as sf

        tmp = td / "generated.wav"
        sf.write(tmp, wav, int(wav_rate), subtype="FLOAT")
        return write_dub(info, tmp, Path(out_path), overwrite=overwrite, **kw)


def mux_input_audio(
    video: Path,
    source: Path,
    out: Path,
    *,
    duration: float,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> None:
    """Put `source`'s first audio stream on a silent video, video stream copied: animate's
    output. The sound keeps its channels and loudness, at VIDEO_RATE, padded or cut to
    `duration`, under the same true-peak ceiling as generated sound."""
    source_channels = probe(source).channels or 2
    channels = min(source_channels, 8)  # AAC holds 8: more are downmixed to 7.1

    def args(trim: float) -> list[str]:
        af = f"aresample={VIDEO_RATE}:first_pts=0,apad,{_limit(VIDEO_RATE, trim)}"
        a = ["-y", "-i", file_arg(video), "-i", file_arg(source), "-map", "0:v:0", "-map", "1:a:0"]
        a += ["-af", af, "-t", f"{duration:.6f}", "-c:v", "copy"]
        a += ["-ac", "8"] if source_channels > 8 else []
        return a + [*_audio_codec(out, channels), *_tags(metadata), *_container_flags(out)]

    with atomic_output(out, overwrite=overwrite) as tmp:
        _write_checked(args, tmp, out)
