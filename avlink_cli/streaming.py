"""Generation for validated input files: one `longform.Job` per sample, read window by window
from the input (`inputs`) and streamed to a temporary file (`outputs` sinks); per input, its
finished samples once all of them are done.

The temporary files live in a claimed scratch folder (files.scratch_dir), removed once the
outputs are written, or by a later run if this process is killed. Nothing grows with the input's
length in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from .files import scratch_dir
from .inputs import AudioFileSource, Input, VideoFileSource
from .longform import Job, Sink, Source, run_jobs
from .options import Sampling
from .outputs import DUB, FramesSink, Generated, Task, WavSink
from .pipeline import Engine, clip_seed
from .progress import Progress
from .windows import WindowPlan


def generate(
    engine: Engine,
    task: Task,
    inputs: Iterable[Input],
    sampling: Sampling,
    *,
    seed: int,
    progress: Progress | None = None,
) -> Iterator[tuple[Input, dict[int, Generated] | BaseException]]:
    """Yield (input, its generated samples by index | exception) as each input completes. The
    sample `n` of an input is seeded by clip_seed(seed, file name, n); its files are deleted when
    the caller asks for the next input."""
    p, direction = engine.preset, "v2a" if task is DUB else "a2v"
    # closed last, after the clips' sources and sinks
    scratch = contextlib.ExitStack()
    tmp = scratch.enter_context(scratch_dir())
    results: dict[int, dict[int, Generated | BaseException]] = {}

    def jobs() -> Iterator[Job]:
        for i, item in enumerate(inputs):
            info = item.info
            duration = info.duration if task is DUB else info.audio_duration or info.duration
            plan = WindowPlan.make(p, duration, overlap=sampling.overlap)
            results[i] = {}
            for n in item.todo:
                stem = tmp / f"{i}.{n}"
                if task is DUB:
                    source: Source = VideoFileSource(info.path, plan, p)
                    sink: Sink = WavSink(stem.with_suffix(".wav"), p.audio.sample_rate)
                else:
                    source = AudioFileSource(info.path, plan, p)
                    size = (p.video.height, p.video.width)
                    sink = FramesSink(stem.with_suffix(".rgb"), p.video.fps, size)
                yield Job(
                    direction,
                    plan,
                    source,
                    sink,
                    clip_seed(seed, info.path.name, n),
                    tag=(i, n, item),
                    label=info.path.name + (f" #{n}" if len(item.todo) > 1 else ""),
                )

    rounds = run_jobs(engine, jobs(), sampling, progress=progress)
    scratch.enter_context(contextlib.closing(rounds))
    try:
        for job, result in rounds:
            i, n, item = job.tag
            if isinstance(result, Generated):
                result.seconds = job.seconds
            results[i][n] = result
            if len(results[i]) < len(item.todo):
                continue
            done = results.pop(i)
            failed = next((r for r in done.values() if isinstance(r, BaseException)), None)
            yield item, failed if failed is not None else done
            for path in tmp.glob(f"{i}.*"):
                path.unlink(missing_ok=True)
    finally:
        scratch.close()
