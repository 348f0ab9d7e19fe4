"""Reading dub/animate inputs: which files a command line names, whether each one has what the
task needs, and its conditioning media window by window.

Inputs are files, folders (their media files, not recursive) or glob patterns. Each input is
probed (`validate`) before the model is loaded, so bad input fails fast and the same way with or
without a model.

Sources read one window at a time (`longform.Source`): video through one `media.iter_video`
stream per clip (frames resampled by timestamp to the preset's fps and size), audio in blocks of
`BLOCK_SECONDS` with `media.read_audio`. Nothing grows with the input's length in memory.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import media
from .files import is_part
from .options import GenOptions
from .outputs import ANIMATE, DUB, Result, Task
from .presets import Preset
from .windows import WindowPlan, pad_window

BLOCK_SECONDS = 30.0


@dataclass
class Input:
    """A validated input with the sample indices still to write, and its record."""

    info: media.MediaInfo
    outs: list[Path]  # one per sample
    todo: list[int]  # sample indices whose output is missing (or to be overwritten)
    res: Result
    t0: float  # when its work began (perf_counter)


def expand_inputs(specs: list[str], task: Task) -> tuple[list[tuple[Path, str | None]], bool]:
    """(input, problem or None) pairs, and whether this is a batch (-o then names a folder).

    Files are taken as given; folders (not recursive) and glob patterns give their media files,
    sorted, skipping earlier outputs (``*.dubbed.*``, ``*.animated.*``), hidden files (a glob
    takes them only where its pattern starts with a dot, as a shell's does) and the temporary
    outputs of runs in progress or killed (files.is_part). A folder or pattern with nothing to
    take is kept with its problem, so that it is reported like a bad file.
    """
    items: list[tuple[Path, str | None]] = []
    many = len(specs) > 1
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            hits = sorted(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
        elif glob.has_magic(spec) and not p.exists():
            hits = sorted(Path(h) for h in glob.glob(spec) if Path(h).is_file())
        else:
            items.append((p, None))
            continue
        many = True
        picked = [
            h
            for h in hits
            if h.suffix.lower() in task.scan and not _is_output(h) and not is_part(h)
        ]
        kind = "video" if task is DUB else "audio"
        where = "in this folder" if p.is_dir() else f"among the {len(hits)} files it matches"
        problem = f"{spec}: no {kind} files ({' '.join(task.scan)}) {where}"
        if not hits and not p.is_dir():
            problem = f"{spec}: no files match"
        items += [(h, None) for h in picked] if picked else [(p, problem)]
    return list(dict.fromkeys(items)), many


def _is_output(path: Path) -> bool:
    return Path(path.stem).suffix in (".dubbed", ".animated")


def validate(task: Task, src: Path, gen: GenOptions) -> media.MediaInfo:
    """Probe the input and check it has what the task needs (raises MediaError)."""
    info = media.probe(src)
    if task is DUB and not info.has_video:
        raise media.MediaError(f"{src}: has no video stream; dub needs a video")
    if task is DUB and gen.original != "replace" and not info.has_audio:
        what = (
            "--mix-original" if gen.mix_original is not None else f"--original-audio {gen.original}"
        )
        raise media.MediaError(f"{src}: has no soundtrack for {what}")
    if task is ANIMATE and not info.has_audio:
        raise media.MediaError(f"{src}: has no audio stream; animate needs sound")
    return info


class BlockReader:
    """Samples [i, i + n) of a file's first audio stream at `sample_rate`, for non-decreasing i,
    decoded in blocks; zeros past `total` samples."""

    def __init__(self, path: Path, sample_rate: int, total: int, *, block: float = BLOCK_SECONDS):
        self.path, self.sr, self.total = path, sample_rate, total
        self.block = max(1, round(block * sample_rate))
        self.buf, self.start = np.zeros(0, np.float32), 0  # buf holds samples [start, start + len)

    def take(self, i: int, n: int) -> np.ndarray:
        self.buf, self.start = self.buf[max(0, i - self.start) :], max(i, self.start)
        while self.start + len(self.buf) < min(i + n, self.total):
            at = self.start + len(self.buf)
            size = min(max(self.block, i + n - at), self.total - at)
            more = media.read_audio(
                self.path, sample_rate=self.sr, start=at / self.sr, duration=size / self.sr
            )
            self.buf = np.concatenate([self.buf, more])
        return pad_window(self.buf[i - self.start : i - self.start + n], n, hold=False)


class AudioFileSource:
    """a2v conditioning: windows of a file's audio at 16 kHz."""

    def __init__(self, path: Path, plan: WindowPlan, preset: Preset):
        self.plan, self.sr, self.n = plan, preset.audio.sample_rate, preset.n_samples
        self.reader = BlockReader(path, self.sr, plan.total(self.sr))

    def window(self, k: int) -> np.ndarray:
        return self.reader.take(self.plan.index(k, self.sr), self.n)

    def close(self) -> None:
        self.reader.buf = np.zeros(0, np.float32)


class VideoFileSource:
    """v2a conditioning: windows of a file's video at the preset's fps and size, streamed."""

    def __init__(self, path: Path, plan: WindowPlan, preset: Preset):
        self.plan, self.fps, self.n = plan, preset.video.fps, preset.n_frames
        size = (preset.video.height, preset.video.width)
        self.frames = media.iter_video(path, fps=self.fps, size=size, chunk_frames=self.n)
        self.buf, self.start = np.zeros((0, *size, 3), np.uint8), 0

    def window(self, k: int) -> np.ndarray:
        i = self.plan.index(k, self.fps)
        self.buf, self.start = self.buf[max(0, i - self.start) :], max(i, self.start)
        while self.start + len(self.buf) < i + self.n:
            chunk = next(self.frames, None)
            if chunk is None:
                break
            self.buf = np.concatenate([self.buf, chunk])
        return pad_window(self.buf[i - self.start :], self.n, hold=True)

    def close(self) -> None:
        self.frames.close()  # stops its ffmpeg process
