"""Writing media files: audio to .wav/.flac, frames to H.264, audio muxed onto a copied video
stream. Every write goes through atomic_output, so a target is complete or absent."""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from avlink_cli.files import claim_part, scratch_dir, set_default_mode

from .ffmpeg import MediaError, OutputExistsError, faststart, ffmpeg_process, file_arg, run_ffmpeg

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
AUDIO_SUFFIXES = (".wav", ".flac")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Refuses an existing target unless overwrite. The parent folder is created if missing. The
    temporary file is hidden, named so that no input expansion takes it, and claimed while it is
    written (files.claim_part): if this process is killed, a later run removes it.
    """
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected an output file")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (not overwriting)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = claim_part(path)
    except OSError as e:
        raise MediaError(f"{path}: cannot write to {path.parent} ({e.strerror or e})") from None
    try:
        yield tmp
        set_default_mode(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:  # link fails if the target appeared meanwhile: never clobber
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path}: already exists (not overwriting)") from None
            except OSError:
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        os.close(fd)


def _as_float(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim not in (1, 2):
        raise ValueError(f"audio must be (S,) or (S, C), got shape {wav.shape}")
    return np.clip(np.nan_to_num(wav), -1.0, 1.0)


def _fit(wav: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad along time to exactly n samples."""
    pad = [(0, max(0, n - len(wav)))] + [(0, 0)] * (wav.ndim - 1)
    return np.pad(wav[:n], pad)


def write_audio(
    path: str | os.PathLike, wav: np.ndarray, sample_rate: int, *, overwrite: bool = False
) -> None:
    """Write (S,) or (S, C) float audio to .wav or .flac (16-bit PCM), atomically."""
    import soundfile as sf

    path = Path(path)
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise MediaError(f"{path}: cannot write audio as '{path.suffix}' (use .wav or .flac)")
    wav = _as_float(wav)
    with atomic_output(path, overwrite=overwrite) as tmp:
        fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
        sf.write(tmp, wav, int(sample_rate), format=fmt, subtype="PCM_16")


def _mux(video: Path, wav: np.ndarray, sample_rate: int, tmp: Path, td: Path, out: Path) -> None:
    """Copy video's first video stream and encode wav (float, at sample_rate) as AAC into tmp."""
    import soundfile as sf

    wav_file = os.path.join(td, "audio.wav")
    sf.write(wav_file, wav, int(sample_rate), subtype="FLOAT")
    _mux_file(video, Path(wav_file), tmp, out)


def _mux_file(video: Path, wav_file: Path, tmp: Path, out: Path) -> None:
    """Copy video's first video stream and encode wav_file's audio as AAC into tmp (for out)."""
    args = ["-y", "-i", file_arg(video), "-i", file_arg(wav_file), "-map", "0:v:0", "-map", "1:a:0"]
    args += ["-c:v", "copy", "-c:a", "aac", "-b:a", "160k", "-map_metadata", "0"]
    run_ffmpeg([*args, *faststart(out), file_arg(tmp)], out, "cannot write")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    scale: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> None:
    """Encode (T, H, W, 3) uint8 frames (or an iterable of such chunks) to H.264 yuv420p mp4.

    Frame k is shown from k / fps. yuv420p needs even sizes: an odd height or width gets one
    copy of its last row or column appended (no scaling, no black bar). ``audio`` (S,) or
    (S, C) at sample_rate, sample 0 at t = 0, is padded or trimmed to T / fps and encoded AAC.
    ``scale`` (width, height), both even: ffmpeg scales the frames to it, nearest neighbour
    (each model pixel stays a sharp block), for viewing.
    """
    if scale is not None and (min(scale) < 2 or scale[0] % 2 or scale[1] % 2):
        raise ValueError(f"write_video: scale must be even and at least 2x2, got {scale}")
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(f"{path}: cannot write video as '{path.suffix}' (use .mp4/.mov/.mkv)")
    if audio is not None and not sample_rate:
        raise ValueError("write_video: audio needs a sample_rate")
    chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    first = np.asarray(next(chunks, np.zeros((0, 0, 0, 3), np.uint8)))
    if first.ndim != 4 or first.shape[0] == 0 or first.shape[-1] != 3:
        raise ValueError(f"write_video: frames must be (T, H, W, 3), got {first.shape}")
    h, w = first.shape[1:3]
    even = [(0, 0), (0, h % 2), (0, w % 2), (0, 0)]
    n_frames = 0

    def raw_frames() -> Iterator[bytes]:
        nonlocal n_frames
        for chunk in itertools.chain([first], chunks):
            chunk = np.asarray(chunk, dtype=np.uint8)
            if chunk.shape[1:] != (h, w, 3):
                raise ValueError(f"write_video: chunk of shape {chunk.shape}, expected {h}x{w}")
            n_frames += len(chunk)
            yield np.pad(chunk, even, mode="edge").tobytes()

    with scratch_dir() as td, atomic_output(path, overwrite=overwrite) as tmp:
        # Video first, audio muxed in a second (stream-copy) pass: the number of frames, and so
        # the audio length, is only known once an iterable of chunks is exhausted.
        silent = tmp if audio is None else Path(td, "video" + path.suffix)
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w + w % 2}x{h + h % 2}"]
        args += ["-r", repr(float(fps)), "-i", "pipe:0"]
        if scale is not None:
            args += ["-vf", f"scale={scale[0]}:{scale[1]}:flags=neighbor"]
        args += ["-c:v", "libx264", "-preset", "fast"]
        args += ["-crf", "18", "-pix_fmt", "yuv420p", *faststart(path), file_arg(silent)]
        _pipe_in(args, raw_frames(), path)
        if audio is not None:
            wav = _fit(_as_float(audio), round(n_frames / fps * sample_rate))
            _mux(silent, wav, int(sample_rate), tmp, td, path)


def _pipe_in(args: list[str], data: Iterable[bytes], path: Path) -> None:
    """Run ffmpeg feeding ``data`` to its stdin (an exception in ``data`` abandons the encode)."""
    with ffmpeg_process(args, path, "cannot encode video", stdin=subprocess.PIPE) as proc:
        with contextlib.suppress(BrokenPipeError):  # ffmpeg quit early: its exit code says why
            for block in data:
                proc.stdin.write(block)
