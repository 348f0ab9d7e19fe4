"""Training data, decoded once: a folder of .npy arrays that every stage reads by index.

A cache folder holds, for N clips of the preset's window:
  frames.npy  (N, T, H, W, 3) uint8   at the preset's fps and size
  wav.npy     (N, S) float32          mono at the preset's sample rate
  meta.json   preset name, N, source, captions (N strings), events (N lists, may be empty)
Arrays are written through memory maps, so building a cache never holds it whole in memory,
and they are read with `mmap_mode="r"`, never with pickle.

Sources: AVSynth (rendered straight to arrays, no lossy encode) or any folder of real videos
with sound, cut into non-overlapping windows of the preset's duration. Captions for real videos
come from `captions.csv` (columns `file,caption`) in the folder or a `<stem>.txt` beside a clip.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlink_cli.manifest import write_json_atomic
from avlink_cli.presets import Preset

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}


@dataclass
class ClipArrays:
    """One window: frames (T, H, W, 3) uint8, wav (S,) float32, caption, true events."""

    frames: np.ndarray
    wav: np.ndarray
    caption: str = ""
    events: list[dict] | None = None


@dataclass
class ClipCache:
    """A built cache, opened read-only."""

    root: Path
    frames: np.ndarray
    wav: np.ndarray
    captions: list[str]
    events: list[list[dict]]

    def __len__(self) -> int:
        return len(self.captions)

    @classmethod
    def open(cls, root: Path) -> ClipCache:
        meta = json.loads((root / "meta.json").read_text())
        return cls(
            root=root,
            frames=np.load(root / "frames.npy", mmap_mode="r", allow_pickle=False),
            wav=np.load(root / "wav.npy", mmap_mode="r", allow_pickle=False),
            captions=meta["captions"],
            events=meta["events"],
        )


def build_cache(
    root: Path,
    preset: Preset,
    clips: Iterable[ClipArrays],
    n: int,
    *,
    source: str,
    progress: Callable[[int], None] | None = None,
) -> ClipCache:
    """Write up to `n` clips into `root` (atomically: a temp folder renamed at the end)."""
    root = Path(root)
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shape_f = (n, preset.n_frames, preset.video.height, preset.video.width, 3)
    frames = np.lib.format.open_memmap(tmp / "frames.npy", "w+", np.uint8, shape_f)
    wav = np.lib.format.open_memmap(tmp / "wav.npy", "w+", np.float32, (n, preset.n_samples))
    captions: list[str] = []
    events: list[list[dict]] = []
    for i, clip in enumerate(clips):
        if i >= n:
            break
        frames[i] = fit_frames(clip.frames, preset.n_frames)
        wav[i] = fit_length(clip.wav, preset.n_samples)
        captions.append(clip.caption)
        events.append(clip.events or [])
        if progress:
            progress(i + 1)
    count = len(captions)
    frames.flush()
    wav.flush()
    del frames, wav
    if count < n:  # a folder of real videos may give fewer windows than asked for
        _truncate(tmp / "frames.npy", count)
        _truncate(tmp / "wav.npy", count)
    write_json_atomic(
        tmp / "meta.json",
        {
            "preset": preset.name,
            "n": count,
            "source": source,
            "captions": captions,
            "events": events,
        },
    )
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    return ClipCache.open(root)


def _truncate(path: Path, count: int) -> None:
    arr = np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(
        path.with_suffix(".tmp.npy"), "w+", arr.dtype, (count, *arr.shape[1:])
    )
    out[:] = arr[:count]
    out.flush()
    del out, arr
    os.replace(path.with_suffix(".tmp.npy"), path)


def fit_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """Pad (repeating the last frame) or trim to exactly n frames."""
    if len(frames) >= n:
        return frames[:n]
    if len(frames) == 0:
        raise ValueError("clip has no frames")
    pad = np.repeat(frames[-1:], n - len(frames), axis=0)
    return np.concatenate([frames, pad])


def fit_length(wav: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad or trim a waveform to exactly n samples."""
    if len(wav) >= n:
        return wav[:n]
    return np.pad(wav, (0, n - len(wav)))


# --- sources ----------------------------------------------------------------------------------


def avsynth_clips(preset: Preset, *, split: str, seed: int, count: int) -> Iterator[ClipArrays]:
    """AVSynth clips rendered straight to arrays (no H.264/AAC round trip)."""
    from avlink_cli.synth import render_clip

    for i in range(count):
        clip = render_clip(preset, seed=seed + i, split=split)
        yield ClipArrays(clip.frames, clip.audio, clip.sidecar["caption"], clip.sidecar["events"])


def video_folder_clips(folder: Path, preset: Preset) -> Iterator[ClipArrays]:
    """Non-overlapping windows of the preset's duration from every video with sound in a folder.

    A file that cannot be read, or has no audio, is skipped with a warning.
    """
    from avlink_cli import media

    folder = Path(folder)
    captions = read_captions(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    size = (preset.video.height, preset.video.width)
    for path in files:
        try:
            info = media.probe(path)
        except media.MediaError as e:
            log.warning("skipping %s", e)
            continue
        if not (info.has_video and info.has_audio):
            log.warning("skipping %s: needs both video and sound", path)
            continue
        caption = captions.get(path.name) or captions.get(path.stem) or _sidecar_caption(path)
        n_windows = int(info.duration // preset.duration)
        for w in range(n_windows):
            start = w * preset.duration
            frames = media.read_video(
                path, fps=preset.video.fps, size=size, start=start, duration=preset.duration
            )
            wav = media.read_audio(
                path, sample_rate=preset.audio.sample_rate, start=start, duration=preset.duration
            )
            yield ClipArrays(frames, wav, caption)


def count_video_windows(folder: Path, preset: Preset) -> int:
    """How many windows `video_folder_clips` will give (probing only, no decoding)."""
    from avlink_cli import media

    total = 0
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() not in VIDEO_EXTS:
            continue
        try:
            info = media.probe(path)
        except media.MediaError:
            continue
        if info.has_video and info.has_audio:
            total += int(info.duration // preset.duration)
    return total


def read_captions(folder: Path) -> dict[str, str]:
    """`captions.csv` (file,caption) in the folder, keyed by file name and by stem."""
    path = Path(folder) / "captions.csv"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name, caption = row.get("file", ""), row.get("caption", "")
            out[name] = caption
            out[Path(name).stem] = caption
    return out


def _sidecar_caption(path: Path) -> str:
    txt = path.with_suffix(".txt")
    if txt.is_file():
        return txt.read_text().strip()
    js = path.with_suffix(".json")
    if js.is_file():
        try:
            return str(json.loads(js.read_text()).get("caption", ""))
        except ValueError:
            return ""
    return ""
