"""Decoding: video frames resampled by timestamp to a frame rate and size, audio to mono at a
sample rate; both over an optional [start, start + duration) window of the file's timeline."""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Iterator

import numpy as np

from .ffmpeg import MediaError, ffmpeg_process, file_arg, run_ffmpeg
from .info import probe


def _window(start: float, duration: float | None) -> list[str]:
    args = ["-ss", f"{start:.6f}"] if start > 0 else []
    return args + (["-t", f"{duration:.6f}"] if duration is not None else [])


def _cover_crop(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> str:
    """ffmpeg filter: scale so src covers dst keeping aspect, then centre-crop to dst."""
    (sh, sw), (dh, dw) = src_hw, dst_hw
    s = max(dh / sh, dw / sw)
    h, w = max(dh, math.ceil(sh * s - 1e-6)), max(dw, math.ceil(sw * s - 1e-6))
    return f"scale={w}:{h}:flags=bicubic,setsar=1,crop={dw}:{dh}"


def iter_video(
    path: str | os.PathLike,
    *,
    fps: float,
    size: tuple[int, int],
    start: float = 0.0,
    duration: float | None = None,
    chunk_frames: int = 64,
) -> Iterator[np.ndarray]:
    """Stream frames as (T, H, W, 3) uint8 chunks, resampled by timestamp to fps and size (H, W).

    Frame k is the picture on screen at ``start + k / fps``; there are exactly
    ``round(span * fps)`` frames, span being ``duration`` (clipped to the video's end).
    Only one chunk is in memory at a time.
    """
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{info.path}: has no video stream")
    span = max(0.0, info.duration - start)
    span = span if duration is None else min(span, duration)
    if span <= 0:
        raise MediaError(f"{info.path}: start {start:g}s is past the end ({info.duration:g}s)")
    n_out = max(1, round(span * fps))
    h, w = size
    # Seek a little early: an accurate seek drops every frame before the seek point, including
    # the one still on screen at `start`. round=up: slot k shows the last frame with pts <= t_k.
    lead = min(start, 1.0)
    crop = _cover_crop(info.display_hw, size)
    vf = f"fps=fps={fps!r}:start_time={lead:.6f}:round=up,{crop}"
    args = [*_window(start - lead, span + lead), "-i", file_arg(info.path), "-map", "0:v:0"]
    args += ["-vf", vf, "-pix_fmt", "rgb24", "-frames:v", str(n_out), "-f", "rawvideo", "pipe:1"]
    frame_bytes, sent, last = h * w * 3, 0, None
    with ffmpeg_process(args, info.path, "cannot decode video", stdout=subprocess.PIPE) as proc:
        while sent < n_out:
            buf = proc.stdout.read(min(chunk_frames, n_out - sent) * frame_bytes)
            if not (got := len(buf) // frame_bytes):
                break
            last = np.frombuffer(buf[: got * frame_bytes], np.uint8).reshape(got, h, w, 3)
            sent += got
            yield last
    if last is None:
        raise MediaError(f"{info.path}: cannot decode video (no frames came out)")
    while sent < n_out:  # the stream ended a little early: hold the last picture
        pad = min(chunk_frames, n_out - sent)
        sent += pad
        yield np.repeat(last[-1:], pad, axis=0)


def read_video(
    path: str | os.PathLike,
    *,
    fps: float,
    size: tuple[int, int],
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """All frames at once, (T, H, W, 3) uint8; same timing as iter_video. For short clips."""
    return np.concatenate(
        list(iter_video(path, fps=fps, size=size, start=start, duration=duration))
    )


def read_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """The first audio stream of any audio or video file as (S,) float32 mono at sample_rate.

    Sample n is at ``start + n / sample_rate``. Channels are downmixed with ffmpeg's standard
    matrix, normalised so that it cannot clip. With ``duration`` the result has exactly
    ``round(duration * sample_rate)`` samples, zero-padded past the end of the stream.
    """
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{info.path}: has no audio stream")
    # first_pts=0: a stream that starts late is padded, so sample 0 is at t = start.
    af = f"aresample={int(sample_rate)}:ochl=mono:rematrix_maxval=1:first_pts=0"
    args = [*_window(start, duration), "-i", file_arg(info.path), "-map", "0:a:0", "-vn"]
    args += ["-af", af]
    raw = run_ffmpeg([*args, "-f", "f32le", "pipe:1"], info.path, "cannot decode audio")
    wav = np.frombuffer(raw, np.float32).copy()
    if duration is not None:
        n = round(duration * sample_rate)
        wav = np.pad(wav[:n], (0, max(0, n - len(wav))))
    return wav
