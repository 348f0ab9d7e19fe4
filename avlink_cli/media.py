"""Media files in and out, through the ffmpeg binary that imageio-ffmpeg ships (no ffprobe).

Time convention: t = 0 is the start of the file's timeline (ffmpeg's, after its start offset).
A decoded video at ``fps`` holds frame k = the picture on screen at ``start + k / fps``; a decoded
waveform holds sample n at ``start + n / sample_rate``. Frames are (T, H, W, 3) uint8 RGB, audio
is (S,) float32 mono in [-1, 1].

Resize rule: the displayed picture (rotation and pixel aspect applied) is scaled so that it
covers the target size with its aspect kept, i.e. the short side (relative to the target) fits,
then centre-cropped. Every write goes to a hidden temporary file beside the target and is moved
into place only when complete; an existing file is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from avlink_cli.files import set_default_mode

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
AUDIO_SUFFIXES = (".wav", ".flac")


class MediaError(Exception):
    """A media file could not be read or written. The message is one line naming the file."""


class OutputExistsError(MediaError):
    """The output file exists and overwrite was not asked for."""


@dataclass(frozen=True)
class MediaInfo:
    """What probe() finds. Durations in seconds; width/height are the coded size (see display_hw).

    duration is where the video stream ends (its last frame's end) on the file's timeline, which
    starts at 0, when there is video; else where the audio ends. fps is the average frame rate
    over the frames' own span. rotation is the clockwise turn, in degrees, that the player
    applies for display (0, 90, 180 or 270), like a phone's legacy ``rotate`` tag.
    """

    path: Path
    duration: float
    has_video: bool
    fps: float | None
    n_frames: int
    width: int
    height: int
    rotation: int
    has_audio: bool
    sample_rate: int | None
    channels: int | None
    sar: float = 1.0
    audio_duration: float | None = None

    @property
    def display_hw(self) -> tuple[int, int]:
        """(height, width) as shown: pixel aspect and rotation applied."""
        h, w = self.height, round(self.width * self.sar)
        return (w, h) if self.rotation in (90, 270) else (h, w)


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


_GENERIC = ("Error opening", "Error parsing", "Failed to set value", "To ignore this", "Conversion")


def _last_line(stderr: str) -> str:
    """ffmpeg's most specific complaint: the last line that is not a generic epilogue."""
    # Lines look like "[component @ 0x...] message": keep the message only.
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", ln.strip()) for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln]
    specific = [ln for ln in lines if not ln.startswith(_GENERIC)]
    return (specific or lines or ["ffmpeg failed"])[-1]


@contextlib.contextmanager
def _ffmpeg(args: list[str], path: Path, what: str, **popen) -> Iterator[subprocess.Popen]:
    """Run ffmpeg around the block; kill it if the block fails (or a generator is closed).

    A non-zero exit raises MediaError("<path>: <what> (<ffmpeg's complaint>)"). stderr goes to
    a temporary file, so pipes on stdin/stdout can never deadlock against it.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *args]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stderr=err, **popen)
        try:
            yield proc
        except BaseException:
            proc.kill()
            raise
        finally:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            raise MediaError(f"{path}: {what} ({_last_line(err.read().decode(errors='replace'))})")


def _run(args: list[str], path: Path, what: str) -> bytes:
    """Run ffmpeg to completion and return its stdout."""
    with _ffmpeg(args, path, what, stdout=subprocess.PIPE) as proc:
        return proc.stdout.read()


# ---------------------------------------------------------------------------------------- probe

_LAYOUT_NAMES = {"mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8}


def _channel_count(layout: str) -> int:
    if m := re.match(r"(\d+) channels", layout):
        return int(m.group(1))
    if m := re.match(r"(\d+)\.(\d+)", layout):
        return int(m.group(1)) + int(m.group(2))
    return _LAYOUT_NAMES.get(layout.split("(")[0], 2)


def _check_input(path: Path) -> None:
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected a media file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path}: not readable")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: empty file (0 bytes)")


def _stream_spans(path: Path, maps: list[str]) -> list[tuple[int, Fraction, Fraction]]:
    """(packet count, first pts, end) per mapped stream, in seconds on ffmpeg's timeline (t = 0
    at the file start), from a stream-copy framecrc pass: exact, and no decoding.

    Packets flagged discard (AAC priming, edit-list pre-roll) are not counted. Any demuxer error
    (a truncated or damaged file) is raised rather than silently giving short counts.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path)]
    for m in maps:
        cmd += ["-map", m]
    res = subprocess.run([*cmd, "-c", "copy", "-f", "framecrc", "-"], capture_output=True)
    err = res.stderr.decode(errors="replace")
    if res.returncode != 0 or err.strip():
        raise MediaError(f"{path}: truncated or corrupt ({_last_line(err)})")
    tb: dict[int, Fraction] = {}
    pkts: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(maps))}
    for line in res.stdout.decode(errors="replace").splitlines():
        if m := re.match(r"#tb (\d+): (\d+)/(\d+)", line):
            tb[int(m.group(1))] = Fraction(int(m.group(2)), int(m.group(3)))
        elif line and line[0].isdigit():
            f = [x.strip() for x in line.split(",")]
            flags = next((int(x[2:], 16) for x in f[6:] if x.startswith("F=")), 1)
            if not flags & 0x4:
                pkts[int(f[0])].append((int(f[2]), int(f[3])))
    spans = []
    for i in range(len(maps)):
        p = pkts[i]
        if not p:
            spans.append((0, Fraction(0), Fraction(0)))
            continue
        lo, hi = min(t for t, _ in p), max(t + d for t, d in p)
        if all(d == 0 for _, d in p) and len(p) > 1:  # no packet durations: assume even spacing
            hi = lo + Fraction(max(t for t, _ in p) - lo) * len(p) / (len(p) - 1)
        spans.append((len(p), max(lo * tb[i], Fraction(0)), max(hi * tb[i], Fraction(0))))
    return spans


def probe(path: str | os.PathLike) -> MediaInfo:
    """Describe a media file: streams, exact frame count, durations. Raises MediaError."""
    path = Path(path)
    _check_input(path)
    res = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True
    )
    text = res.stderr.decode(errors="replace")
    if "Input #0" not in text:
        raise MediaError(f"{path}: not a media file ffmpeg can read ({_last_line(text)})")
    vline = next(
        (ln for ln in text.splitlines() if "Video:" in ln and "attached pic" not in ln), None
    )
    aline = next((ln for ln in text.splitlines() if re.search(r"Stream #.*Audio:", ln)), None)
    if vline is None and aline is None:
        raise MediaError(f"{path}: has no audio or video stream")
    maps = (["0:v:0"] if vline else []) + (["0:a:0"] if aline else [])
    spans = dict(zip(maps, _stream_spans(path, maps), strict=True))

    width = height = rotation = n_frames = 0
    fps, sar = None, 1.0
    if vline:
        size = re.search(r", (\d{2,5})x(\d{2,5})", vline)
        if size is None:
            raise MediaError(f"{path}: cannot read the video size")
        width, height = int(size.group(1)), int(size.group(2))
        if (m := re.search(r"SAR (\d+):(\d+)", vline)) and int(m.group(1)) and int(m.group(2)):
            sar = int(m.group(1)) / int(m.group(2))
        if m := re.search(r"rotation of (-?[\d.]+) degrees", text):
            rotation = round(-float(m.group(1)) / 90) * 90 % 360
        n_frames, first, end = spans["0:v:0"]
        if n_frames == 0 or end <= first:
            raise MediaError(f"{path}: video stream has no frames")
        fps = float(n_frames / (end - first))
    sample_rate = channels = None
    adur = None
    if aline:
        if m := re.search(r"(\d+) Hz, ([^,]+)", aline):
            sample_rate, channels = int(m.group(1)), _channel_count(m.group(2).strip())
        adur = float(spans["0:a:0"][2])
    return MediaInfo(
        path=path,
        duration=float(spans["0:v:0"][2]) if vline else float(adur or 0.0),
        has_video=vline is not None,
        fps=fps,
        n_frames=n_frames,
        width=width,
        height=height,
        rotation=rotation,
        has_audio=aline is not None,
        sample_rate=sample_rate,
        channels=channels,
        sar=sar,
        audio_duration=adur,
    )


# ---------------------------------------------------------------------------------------- decode


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
    args = [*_window(start - lead, span + lead), "-i", str(info.path), "-map", "0:v:0"]
    args += ["-vf", vf, "-pix_fmt", "rgb24", "-frames:v", str(n_out), "-f", "rawvideo", "pipe:1"]
    frame_bytes, sent, last = h * w * 3, 0, None
    with _ffmpeg(args, info.path, "cannot decode video", stdout=subprocess.PIPE) as proc:
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
    args = [*_window(start, duration), "-i", str(info.path), "-map", "0:a:0", "-vn", "-af", af]
    raw = _run([*args, "-f", "f32le", "pipe:1"], info.path, "cannot decode audio")
    wav = np.frombuffer(raw, np.float32).copy()
    if duration is not None:
        n = round(duration * sample_rate)
        wav = np.pad(wav[:n], (0, max(0, n - len(wav))))
    return wav


# ---------------------------------------------------------------------------------------- write


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    Refuses an existing target unless overwrite. The parent folder is created if missing.
    """
    path = Path(path)
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, expected an output file")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (not overwriting)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent
        )
        os.close(fd)
    except OSError as e:
        raise MediaError(f"{path}: cannot write to {path.parent} ({e.strerror or e})") from None
    tmp = Path(tmp_name)
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


def mux_audio(
    video_path: str | os.PathLike,
    wav: np.ndarray,
    sample_rate: int,
    out_path: str | os.PathLike,
    *,
    mix_original: float | None = None,
    overwrite: bool = False,
) -> None:
    """Put a waveform on a video: video stream copied bit for bit, audio encoded as AAC.

    The audio (sample 0 at the video's t = 0) is padded with silence or trimmed to the video's
    duration. With ``mix_original=g`` the video's own soundtrack (downmixed to mono) is added
    at gain g. Output container from the suffix: .mp4, .mov or .mkv.
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in VIDEO_SUFFIXES:
        raise MediaError(f"{out_path}: cannot mux into '{out_path.suffix}' (use .mp4/.mov/.mkv)")
    info = probe(video_path)
    if not info.has_video:
        raise MediaError(f"{info.path}: has no video stream")
    wav = _fit(_as_float(wav), round(info.duration * sample_rate))
    if mix_original is not None:
        if not info.has_audio:
            raise MediaError(f"{info.path}: has no soundtrack to mix in")
        orig = read_audio(info.path, sample_rate=sample_rate, duration=info.duration)
        wav = np.clip((wav if wav.ndim == 1 else wav.mean(1)) + mix_original * orig, -1.0, 1.0)
    with tempfile.TemporaryDirectory() as td, atomic_output(out_path, overwrite=overwrite) as tmp:
        _mux(info.path, wav, sample_rate, tmp, td, out_path)


def _faststart(path: Path) -> list[str]:
    return ["-movflags", "+faststart"] if path.suffix.lower() in (".mp4", ".mov") else []


def _mux(video: Path, wav: np.ndarray, sample_rate: int, tmp: Path, td: str, out: Path) -> None:
    """Copy video's first video stream and encode wav (float, at sample_rate) as AAC into tmp."""
    import soundfile as sf

    wav_file = os.path.join(td, "audio.wav")
    sf.write(wav_file, wav, int(sample_rate), subtype="FLOAT")
    args = ["-y", "-i", str(video), "-i", wav_file, "-map", "0:v:0", "-map", "1:a:0"]
    args += ["-c:v", "copy", "-c:a", "aac", "-b:a", "160k", "-map_metadata", "0"]
    _run([*args, *_faststart(out), str(tmp)], out, "cannot write")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int | None = None,
    overwrite: bool = False,
) -> None:
    """Encode (T, H, W, 3) uint8 frames (or an iterable of such chunks) to H.264 yuv420p mp4.

    Frame k is shown from k / fps. yuv420p needs even sizes: an odd height or width gets one
    copy of its last row or column appended (no scaling, no black bar). ``audio`` (S,) or
    (S, C) at sample_rate, sample 0 at t = 0, is padded or trimmed to T / fps and encoded AAC.
    """
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

    with tempfile.TemporaryDirectory() as td, atomic_output(path, overwrite=overwrite) as tmp:
        # Video first, audio muxed in a second (stream-copy) pass: the number of frames, and so
        # the audio length, is only known once an iterable of chunks is exhausted.
        silent = tmp if audio is None else Path(td, "video" + path.suffix)
        args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w + w % 2}x{h + h % 2}"]
        args += ["-r", repr(float(fps)), "-i", "pipe:0", "-c:v", "libx264", "-preset", "fast"]
        args += ["-crf", "18", "-pix_fmt", "yuv420p", *_faststart(path), str(silent)]
        _pipe_in(args, raw_frames(), path)
        if audio is not None:
            wav = _fit(_as_float(audio), round(n_frames / fps * sample_rate))
            _mux(silent, wav, int(sample_rate), tmp, td, path)


def _pipe_in(args: list[str], data: Iterable[bytes], path: Path) -> None:
    """Run ffmpeg feeding ``data`` to its stdin (an exception in ``data`` abandons the encode)."""
    with _ffmpeg(args, path, "cannot encode video", stdin=subprocess.PIPE) as proc:
        with contextlib.suppress(BrokenPipeError):  # ffmpeg quit early: its exit code says why
            for block in data:
                proc.stdin.write(block)
