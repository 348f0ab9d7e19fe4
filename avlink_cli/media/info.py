"""probe(): what a media file holds, with exact frame counts and stream ends, from ffmpeg alone.

There is no ffprobe in imageio-ffmpeg: streams and sizes come from ffmpeg's input summary, counts
and durations from a stream-copy framecrc pass (no decoding).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from .ffmpeg import MediaError, ffmpeg_exe, file_arg, last_line, run_captured


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


_LAYOUT_NAMES = {"mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8}


def _channel_count(layout: str) -> int:
    if m := re.match(r"(\d+) channels", layout):
        return int(m.group(1))
    if m := re.match(r"\d+(\.\d+)+", layout):  # 5.1, 7.1, 5.1.4 (height channels too)
        return sum(int(n) for n in m.group(0).split("."))
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
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", file_arg(path)]
    for m in maps:
        cmd += ["-map", m]
    rc, out, err_bytes = run_captured([*cmd, "-c", "copy", "-f", "framecrc", "-"])
    err = err_bytes.decode(errors="replace")
    if rc != 0 or err.strip():
        raise MediaError(f"{path}: truncated or corrupt ({last_line(err)})")
    tb: dict[int, Fraction] = {}
    pkts: dict[int, list[tuple[int, int]]] = {i: [] for i in range(len(maps))}
    for line in out.decode(errors="replace").splitlines():
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
    """Describe a media file: streams, exact frame count, durations. Raises MediaError.

    One dub asks about its input several times (validation, decoding, muxing); each answer is
    kept for as long as the file's size, mtime and inode stay the same.
    """
    path = Path(path)
    _check_input(path)
    st = path.stat()
    return _probe(path, st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=256)
def _probe(path: Path, size: int, mtime_ns: int, inode: int) -> MediaInfo:
    """probe() itself; the file's identity is in the arguments so that a changed file is read again."""
    _, _, err = run_captured([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", file_arg(path)])
    text = err.decode(errors="replace")
    if "Input #0" not in text:
        raise MediaError(f"{path}: not a media file ffmpeg can read ({last_line(text)})")
    # stream lines only: the "Input #0 ... from '<name>'" line holds a name someone else chose
    streams = [ln for ln in text.splitlines() if re.match(r"\s*Stream #\d+:\d+\S*: ", ln)]
    vline = next((ln for ln in streams if ": Video: " in ln and "attached pic" not in ln), None)
    aline = next((ln for ln in streams if ": Audio: " in ln), None)
    if vline is None and aline is None:
        raise MediaError(f"{path}: has no audio or video stream")
    maps = (["0:v:0"] if vline else []) + (["0:a:0"] if aline else [])
    spans = dict(zip(maps, _stream_spans(path, maps), strict=True))

    width = height = rotation = n_frames = 0
    fps, sar = None, 1.0
    if vline:
        size = re.search(r", (\d+)x(\d+)\b", vline)
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
