"""Where dub/animate outputs go and how they are written: output names, the checks made before
any work, the sinks that stream generated windows to temporary files, the atomic write of each
sample from those files, the record of each input (--json), and the JSONL manifest of a batch.

Names: ``clip.mp4`` -> ``clip.dubbed.mp4`` beside it (or in the ``-o`` folder); ``drums.wav`` ->
``drums.animated.mp4``; several samples put their index before the suffix (``clip.dubbed.0.mp4``).
Every write goes through media.atomic_output: an output that exists is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avlink_cli import media
from avlink_cli.files import scratch_dir

MANIFEST_NAME = "avlink-manifest.jsonl"

VIDEO_INPUTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
AUDIO_INPUTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")


class UsageError(Exception):
    """The command line itself is wrong (exit code 2), not one of its inputs."""


@dataclass(frozen=True)
class Task:
    """What a command reads and writes."""

    name: str  # "dub" | "animate"
    scan: tuple[str, ...]  # suffixes picked up from folders and globs
    outputs: tuple[str, ...]  # writable output suffixes
    tag: str  # default output name: clip.mp4 -> clip.<tag><suffix>

    def default_suffix(self, src: Path) -> str:
        if self.name == "dub":
            return src.suffix.lower() if src.suffix.lower() in media.VIDEO_SUFFIXES else ".mkv"
        return ".mp4"


DUB = Task("dub", VIDEO_INPUTS, media.VIDEO_SUFFIXES + media.AUDIO_SUFFIXES, "dubbed")
ANIMATE = Task("animate", AUDIO_INPUTS, media.VIDEO_SUFFIXES, "animated")


@dataclass
class Generated:
    """One generated sample at the input's duration, in a temporary file: a float WAV (dub) or
    raw uint8 frames (T, H, W, 3) (animate)."""

    wav_path: Path | None = None
    sample_rate: int | None = None
    frames_path: Path | None = None
    n_frames: int = 0
    fps: float | None = None
    size: tuple[int, int] | None = None  # (H, W) of the frames in frames_path
    seconds: float = 0.0  # compute time spent generating it


class WavSink:
    """Generated audio to a float WAV at the model's rate (media.sound finishes it: loudness,
    peaks, the input's own soundtrack)."""

    def __init__(self, path: Path, sample_rate: int):
        import soundfile as sf

        self.path, self.sample_rate = path, sample_rate
        self.file = sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="FLOAT")

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(chunk.astype(np.float32))

    def finish(self) -> Generated:
        self.file.close()
        return Generated(wav_path=self.path, sample_rate=self.sample_rate)

    def close(self) -> None:
        self.file.close()


class FramesSink:
    """Generated frames to a raw uint8 file (T, H, W, 3), read back by `iter_frames`."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path, self.fps, self.size, self.count = path, fps, size, 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed by finish/close

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(chunk, np.uint8).tobytes())
        self.count += len(chunk)

    def finish(self) -> Generated:
        self.file.close()
        return Generated(frames_path=self.path, n_frames=self.count, fps=self.fps, size=self.size)

    def close(self) -> None:
        self.file.close()


def iter_frames(path: Path, hw: tuple[int, int], *, chunk: int = 64) -> Iterator[np.ndarray]:
    """Read a raw uint8 frame file back as (T, H, W, 3) chunks of at most `chunk` frames."""
    frame_bytes = hw[0] * hw[1] * 3
    with open(path, "rb") as f:
        while buf := f.read(chunk * frame_bytes):
            yield np.frombuffer(buf, np.uint8).reshape(-1, *hw, 3)


def plan_outputs(
    inputs: list[Path], output: str | None, task: Task, samples: int, *, many: bool = False
) -> list[list[Path]]:
    """Output paths per input. ``output`` names a file for one input, a folder for a batch.

    It is taken as a folder when it is one, ends with a slash, has no suffix, or ``many``.
    No ``output``: next to the input (clip.mp4 -> clip.dubbed.mp4; a folder gets the same
    names). With several samples the index goes before the suffix (clip.dubbed.0.mp4, ...).
    """
    out = None if output is None else Path(output)
    as_folder = out is not None and (
        many or len(inputs) > 1 or out.is_dir() or output.endswith(("/", os.sep)) or not out.suffix
    )
    if out is not None and not as_folder and out.suffix.lower() not in task.outputs:
        raise UsageError(
            f"{out}: cannot write '{out.suffix}' files ({task.name} writes {', '.join(task.outputs)})"
        )
    if as_folder and out is not None and (out.is_file() or out.suffix.lower() in task.outputs):
        if not out.is_dir():
            raise UsageError(f"{out}: names a file; with several inputs -o must be a folder")
    plans = []
    for src in inputs:
        if out is None or as_folder:
            folder = src.parent if out is None else out
            base = folder / f"{src.stem}.{task.tag}{task.default_suffix(src)}"
        else:
            base = out
        plans.append(
            [base]
            if samples == 1
            else [base.with_suffix(f".{i}{base.suffix}") for i in range(samples)]
        )
    return plans


def check_output(path: Path, src: Path, *, overwrite: bool) -> None:
    """Fail now, before any work, if ``path`` cannot be written (raises MediaError)."""
    if path.exists() and path.resolve() == src.resolve():
        raise media.MediaError(f"{path}: output would replace its own input")
    if path.is_dir():
        raise media.MediaError(f"{path}: is a folder, expected an output file")
    if path.exists() and not overwrite:
        raise media.OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")
    check_writable(path)


def check_writable(path: Path) -> None:
    """Fail now (MediaError) unless a new file can be made where ``path`` goes: in its folder,
    or in the nearest folder above it that exists, where the rest would be made.

    Tried for real, with a hidden file removed at once: permission bits do not tell for root,
    a read-only file system or an immutable folder.
    """
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise media.MediaError(f"{path}: cannot write there, {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".avlink-probe-", dir=parent)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise media.MediaError(
            f"{path}: cannot write there, folder {parent} is not writable ({why})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def write(
    task: Task,
    info: media.MediaInfo,
    out: Path,
    g: Generated,
    *,
    original: media.sound.Original = "replace",
    mix_gain: float = 1.0,
    sample_rate: int | None = None,
    metadata: dict[str, str] | None = None,
    size: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> media.Written | None:
    """Write one generated sample for input ``info`` to ``out`` (atomic, via media): dub's sound
    as media.sound finishes it (loudness, peaks, rate, the input's own soundtrack), animate's
    frames with the input's sound, scaled to ``size`` (width, height; nearest neighbour) when
    given. Returns what dub wrote."""
    if task is DUB:
        sound = dict(original=original, mix_gain=mix_gain, sample_rate=sample_rate)
        sound |= dict(metadata=metadata, overwrite=overwrite)
        return media.write_dub(info, g.wav_path, out, **sound)
    with scratch_dir() as td:  # claimed: removed by a later run if this one is killed
        silent = td / f"video{out.suffix}"
        media.write_video(silent, iter_frames(g.frames_path, g.size), g.fps, scale=size)
        media.mux_input_audio(
            silent,
            info.path,
            out,
            duration=g.n_frames / g.fps,
            metadata=metadata,
            overwrite=overwrite,
        )
    return None


@dataclass
class Result:
    """The outcome for one input; `record()` is what --json prints (one JSON line)."""

    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok" | "skipped" (its outputs exist) | "error"
    error: str | None = None
    seconds: float = 0.0  # this input's own time: probe, its share of the sampling, writing
    kind: str = "input"  # what failed: "input" (names its file), "model" or "internal"
    duration: float = 0.0  # seconds of media generated (for the summary)
    media_duration: float | None = None  # the input's duration
    provenance: dict[str, Any] = field(default_factory=dict)  # model, seeds, steps, ...
    notes: list[str] = field(default_factory=list)  # said on stderr (unless -q)

    def record(self) -> dict:
        rec: dict[str, Any] = {"type": "result", "input": self.input}
        rec["output"] = self.outputs[0] if self.outputs else None
        if len(self.outputs) > 1:
            rec["outputs"] = self.outputs
        rec |= {"status": self.status, "error": self.error, "seconds": round(self.seconds, 3)}
        duration = None if self.media_duration is None else round(self.media_duration, 3)
        return rec | {"duration": duration} | self.provenance


def summary_record(results: list[Result], wall: float) -> dict[str, Any]:
    """The final --json line of a batch: counts, wall time and media seconds generated."""
    count = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "error")}
    generated = round(sum(r.duration for r in results if r.status == "ok"), 3)
    return {"type": "summary", "inputs": len(results), **count, "wall_seconds": round(wall, 3)} | {
        "media_seconds": generated
    }


def default_manifest(output: str | None, plans: list[list[Path]]) -> Path | None:
    """``<output folder>/avlink-manifest.jsonl``: -o's folder, else the outputs' common folder."""
    if output is not None and (Path(output).is_dir() or not Path(output).suffix):
        return Path(output) / MANIFEST_NAME
    parents = {str(o.parent) for outs in plans for o in outs}
    return Path(os.path.commonpath(sorted(parents))) / MANIFEST_NAME if parents else None


def check_manifest(path: Path) -> None:
    """Fail now, before any work, if the manifest cannot be appended to (raises MediaError)."""
    if not path.exists():
        return check_writable(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise media.MediaError(f"{path}: cannot append to the manifest ({why})") from None


def append_manifest(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write to an O_APPEND file (under an exclusive lock
    where the platform has one), so concurrent ranks never interleave or tear lines."""
    data = (json.dumps(record) + "\n").encode()
    fd = None
    try:  # checked before any work (check_manifest): the folder went away or filled up since
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        with contextlib.suppress(ImportError, OSError):
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, data)
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise media.MediaError(f"{path}: cannot append to the manifest ({why})") from None
    finally:
        if fd is not None:
            os.close(fd)
