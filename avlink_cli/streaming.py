"""Media files window by window: streaming sources and sinks for `longform`, and `FileGenerator`,
the model as the batch runner sees it.

Sources read one window at a time: video through one `media.iter_video` stream per clip (frames
resampled by timestamp to the preset's fps and size), audio in blocks of `BLOCK_SECONDS` with
`media.read_audio`. Sinks write as windows become final: generated audio to a float WAV, generated
frames to a raw uint8 file, both in a temporary folder; `batch.write` turns those into the output
(mux, encode) and the folder is removed once the output is written. Nothing grows with the input's
length in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import media
from .files import scratch_dir
from .longform import ClipJob, Progress, WindowPlan, pad_window, run_jobs
from .pipeline import Engine, clip_seed
from .presets import Preset

BLOCK_SECONDS = 30.0


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


class WavSink:
    """Generated audio to a float WAV at the model's rate (media.sound finishes it: loudness,
    peaks, the input's own soundtrack)."""

    def __init__(self, path: Path, sample_rate: int):
        import soundfile as sf

        self.path = path
        self.file = sf.SoundFile(path, "w", samplerate=sample_rate, channels=1, subtype="FLOAT")

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(chunk.astype(np.float32))

    def finish(self) -> Path:
        self.file.close()
        return self.path

    def close(self) -> None:
        self.file.close()


class FramesSink:
    """Generated frames to a raw uint8 file (T, H, W, 3), read back by `iter_frames`."""

    def __init__(self, path: Path):
        self.path, self.count = path, 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed by finish/close

    def write(self, chunk: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(chunk, np.uint8).tobytes())
        self.count += len(chunk)

    def finish(self) -> tuple[Path, int]:
        self.file.close()
        return self.path, self.count

    def close(self) -> None:
        self.file.close()


def iter_frames(path: Path, hw: tuple[int, int], *, chunk: int = 64) -> Iterator[np.ndarray]:
    """Read a raw uint8 frame file back as (T, H, W, 3) chunks of at most `chunk` frames."""
    frame_bytes = hw[0] * hw[1] * 3
    with open(path, "rb") as f:
        while buf := f.read(chunk * frame_bytes):
            yield np.frombuffer(buf, np.uint8).reshape(-1, *hw, 3)


@dataclass(frozen=True)
class FileJob:
    """One validated input to generate for: the samples `indices`, seeded by (seed, key, index)."""

    info: media.MediaInfo
    key: str  # the seed key: the input's file name
    indices: tuple[int, ...] = (0,)
    tag: Any = None


class FileGenerator:
    """The model as `batch.run` uses it: file jobs in, per-job lists of finished outputs out."""

    def __init__(self, engine: Engine, *, threads: int | None = None):
        self.engine, self.threads = engine, threads

    def generate_files(
        self,
        task: str,
        jobs: Iterable[FileJob],
        *,
        seed: int,
        prompt: str = "",
        negative_prompt: str = "",
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str = "euler",
        overlap: float = 1.0,
        batch_size: int = 8,
        progress: Progress | None = None,
    ) -> Iterator[tuple[FileJob, list[dict[str, Any]] | BaseException]]:
        """Yield (job, one dict per sample | exception) as each input completes. A sample dict
        holds `wav_path` + `sample_rate` (dub) or `frames_path`, `n_frames`, `fps`, `size`
        (animate); its files are deleted when the caller asks for the next job."""
        p, direction = self.engine.preset, "v2a" if task == "dub" else "a2v"
        # a claimed scratch folder (files.scratch_dir): if this process is killed, a later run
        # removes it; closed last, after the clips' sources and sinks
        scratch = contextlib.ExitStack()
        tmp = scratch.enter_context(scratch_dir())
        results: dict[int, dict[int, Any]] = {}
        seconds: dict[tuple[int, int], float] = {}

        def clips() -> Iterator[ClipJob]:
            for n, job in enumerate(jobs):
                info = job.info
                duration = info.duration if task == "dub" else info.audio_duration or info.duration
                plan = WindowPlan.make(p, duration, overlap=overlap)
                results[n] = {}
                for j in job.indices:
                    stem = tmp / f"{n}.{j}"
                    if task == "dub":
                        source: Any = VideoFileSource(info.path, plan, p)
                        sink: Any = WavSink(stem.with_suffix(".wav"), p.audio.sample_rate)
                    else:
                        source = AudioFileSource(info.path, plan, p)
                        sink = FramesSink(stem.with_suffix(".rgb"))
                    yield ClipJob(
                        direction,
                        plan,
                        source,
                        sink,
                        clip_seed(seed, job.key, j),
                        prompt,
                        negative_prompt,
                        tag=(n, j, job),
                        label=info.path.name + (f" #{j}" if len(job.indices) > 1 else ""),
                    )

        rounds = run_jobs(
            self.engine,
            clips(),
            batch_size=batch_size,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            progress=progress,
        )
        scratch.enter_context(contextlib.closing(rounds))
        try:
            for clip, result in rounds:
                n, j, job = clip.tag
                results[n][j], seconds[n, j] = result, clip.seconds
                if len(results[n]) < len(job.indices):
                    continue
                done = results.pop(n)
                failed = next((r for r in done.values() if isinstance(r, BaseException)), None)
                yield (
                    job,
                    failed
                    if failed is not None
                    else [self._describe(done[j], seconds[n, j]) for j in job.indices],
                )
                for path in tmp.glob(f"{n}.*"):
                    path.unlink(missing_ok=True)
        finally:
            scratch.close()

    def _describe(self, result: Any, seconds: float) -> dict[str, Any]:
        p = self.engine.preset
        if isinstance(result, Path):
            return {"wav_path": result, "sample_rate": p.audio.sample_rate, "seconds": seconds}
        path, count = result
        size = (p.video.height, p.video.width)
        frames = {"frames_path": path, "n_frames": count, "fps": p.video.fps, "size": size}
        return frames | {"seconds": seconds}

    def provenance(
        self, task: str, *, steps: int | None, cfg: float | None, sampler: str
    ) -> dict[str, Any]:
        """What ran, for --json records, manifests, logs and container tags."""
        from .hub import describe_folder

        e, direction = self.engine, "v2a" if task == "dub" else "a2v"
        return {
            "model": e.name,
            **(describe_folder(e.folder) if e.folder is not None else {}),
            "steps": e.default_steps(direction) if steps is None else steps,
            "cfg": e.default_cfg(direction) if cfg is None else cfg,
            "sampler": sampler,
            "device": str(e.device),
            "dtype": str(e.dtype).removeprefix("torch."),
            "threads": self.threads,
        }
