"""Media of any length: windows of the model's clip length, continued across seams, joined.

`dub(engine, frames, sampling)` / `animate(engine, wav, sampling)` take media tensors of any length
and give media of the same duration; `run_jobs` is the scheduler under them and under the files
layer (`batch`): one `Job` per clip (one sample of one input), from its `Source` of conditioning
windows to its `Sink`.

Plan (`windows.WindowPlan`). Windows start on a grid of q seconds every `window - overlap`
seconds; an input no longer than one window is one padded window.

Seams (inpainting). Window k + 1 starts inside window k: its first tokens cover instants window k
has already generated. While window k + 1 is sampled, those tokens are held on the straight flow
path from this window's noise x0 to window k's final tokens, x_t = t * prev + (1 - t) * x0, the
same as replacing them by `flow.interpolate(x0, prev, t)` after every step; the rest of the window
is generated attending to them (self-attention, Fusion), so sound and picture continue the
previous window, and at t = 1 the overlap tokens equal window k's exactly (`Engine.sample`).

Joining (`windows.Stitcher`). Decoded windows are cross-faded over the overlap: audio with
equal-power (sin/cos) gains, frames linearly. Output length is the input's own duration:
`dub` of T frames gives round(T / fps * 16000) samples, `animate` of S samples gives
round(S / 16000 * fps) frames.

Memory is bounded by the window: a clip in flight holds one window of input (its `Source`), the
previous window's tokens, and the decoded part still to be faded (its `Stitcher`); everything
else goes to its `Sink` as soon as it is final.

Batching. `run_jobs` keeps up to `batch_size` clips in flight and samples the next window of each
in one batched call; a clip that finishes frees its slot for the next, so clips of different
lengths share the device. Each clip draws its noise from its own generator seeded by
`pipeline.clip_seed`: its result does not depend on what it was batched with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import torch

from . import shutdown
from .options import Sampling
from .pipeline import Engine, clip_seed
from .presets import Preset
from .progress import Progress
from .windows import Stitcher, WindowPlan, pad_window

_DEFAULT = Sampling()


class Source(Protocol):
    """The conditioning input of one clip, window by window (k = 0, 1, ... in order)."""

    def window(self, k: int) -> np.ndarray: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where one clip's generated output goes, in order; `finish` returns the result."""

    def write(self, chunk: np.ndarray) -> None: ...

    def finish(self) -> Any: ...

    def close(self) -> None: ...


class ArraySource:
    """Windows of an in-memory input at the preset's rate: frames (T, H, W, 3) uint8 for v2a,
    a waveform (S,) at 16 kHz for a2v."""

    def __init__(self, data: np.ndarray, plan: WindowPlan, preset: Preset, direction: str):
        self.data, self.plan = data, plan
        video = direction == "v2a"
        self.rate = preset.video.fps if video else preset.audio.sample_rate
        self.n, self.hold = (preset.n_frames if video else preset.n_samples), video

    def window(self, k: int) -> np.ndarray:
        i = self.plan.index(k, self.rate)
        return pad_window(self.data[i : i + self.n], self.n, hold=self.hold)

    def close(self) -> None:
        pass


class ArraySink:
    """Collects the output in memory; `finish` returns it as one array."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    def write(self, chunk: np.ndarray) -> None:
        self.chunks.append(chunk)

    def finish(self) -> np.ndarray:
        return np.concatenate(self.chunks)

    def close(self) -> None:
        self.chunks = []


@dataclass(eq=False)
class Job:
    """One clip to generate (one sample of one input), and its state while in flight: the next
    window, its noise generator and the previous window's tokens."""

    direction: str  # "v2a" | "a2v"
    plan: WindowPlan
    source: Source
    sink: Sink
    seed: int
    tag: Any = None  # the caller's handle
    label: str = ""  # how progress displays name it
    seconds: float = 0.0  # compute time spent on it: its share of each batched round
    k: int = field(default=0, init=False)  # the next window
    prev: torch.Tensor | None = field(default=None, init=False)  # (N_gen, token_dim), on device
    gen: torch.Generator = field(default_factory=torch.Generator, init=False)
    stitcher: Stitcher | None = field(default=None, init=False)
    rate: float = field(default=0.0, init=False)  # output items per second

    def start(self, preset: Preset) -> None:
        """Seed its noise and open its stitcher: it is in flight from now."""
        self.rate = preset.audio.sample_rate if self.direction == "v2a" else preset.video.fps
        self.stitcher = Stitcher(
            self.plan.total(self.rate), self.sink.write, equal_power=self.direction == "v2a"
        )
        self.gen.manual_seed(self.seed)

    def close(self) -> None:
        for part in (self.source, self.sink):
            part.close()


def _token_rate(preset: Preset, direction: str) -> tuple[Fraction, int]:
    """Generated side: (token groups per second, tokens per group)."""
    if direction == "v2a":
        return Fraction(preset.audio.tokens_per_second).limit_denominator(10_000), 1
    v = preset.video
    return Fraction(v.tokens_per_second).limit_denominator(10_000), v.tokens_per_frame_group


def _sample_round(
    engine: Engine, jobs: list[Job], raws: list[np.ndarray], sampling: Sampling, **kw: Any
) -> torch.Tensor:
    """Sample the next window of every job in one batch -> tokens (B, N_gen, token_dim)."""
    direction = jobs[0].direction
    if any(j.direction != direction for j in jobs):
        raise ValueError("one batch mixes v2a and a2v clips")
    (n_gen, d_gen), (n_cnd, d_cnd) = engine.token_shape(direction)
    x0 = torch.stack([torch.randn(n_gen, d_gen, generator=j.gen) for j in jobs])
    cond_noise = torch.stack([torch.randn(n_cnd, d_cnd, generator=j.gen) for j in jobs])
    known = mask = None
    if any(j.prev is not None for j in jobs):
        rate, per = _token_rate(engine.preset, direction)
        known = torch.zeros(len(jobs), n_gen, d_gen, device=engine.device)
        mask = torch.zeros(len(jobs), n_gen, dtype=torch.bool, device=engine.device)
        for row, j in enumerate(jobs):
            if j.prev is None:
                continue
            shift = round((j.plan.starts[j.k] - j.plan.starts[j.k - 1]) * rate) * per
            known[row, : n_gen - shift] = j.prev[shift:]
            mask[row, : n_gen - shift] = True
    cond = engine.encode(direction, torch.from_numpy(np.stack(raws)))
    return engine.sample(
        direction,
        cond,
        x0=x0,
        cond_noise=cond_noise,
        prompts=[sampling.prompt] * len(jobs),
        negative_prompts=[sampling.negative_prompt] * len(jobs),
        steps=sampling.steps,
        cfg=sampling.cfg,
        sampler=sampling.sampler,
        known=known,
        known_mask=mask,
        **kw,
    )


def run_jobs(
    engine: Engine,
    jobs: Iterable[Job],
    sampling: Sampling,
    *,
    progress: Progress | None = None,
) -> Iterator[tuple[Job, Any]]:
    """Generate every job, `sampling.batch_size` clips at a time; yield (job, sink result or
    exception) as each finishes. A failing clip (its input, its output) fails alone; a failing
    batched call fails the clips in that batch. `jobs` is consumed lazily, as slots free up."""
    progress = progress or Progress()
    pending, active = iter(jobs), []
    try:
        while True:
            shutdown.check()  # each round: a SIGTERM that Python dropped stops here
            while len(active) < sampling.batch_size and (job := next(pending, None)) is not None:
                job.start(engine.preset)
                active.append(job)
            if not active:
                return
            t_round = time.perf_counter()
            ready, raws = [], []
            for j in list(active):
                try:
                    raws.append(j.source.window(j.k))
                    ready.append(j)
                except Exception as e:  # its input went bad: that clip only
                    active.remove(j)
                    j.close()
                    progress.finished(j)
                    yield j, e
            if not ready:
                continue
            progress.round(ready, [j.k for j in ready])
            try:
                tokens = _sample_round(engine, ready, raws, sampling, callback=progress.step)
                decoded = engine.decode(ready[0].direction, tokens).numpy()
                share = (time.perf_counter() - t_round) / len(ready)
                for j in ready:
                    j.seconds += share
            except Exception as e:
                for j in ready:
                    active.remove(j)
                    j.close()
                    progress.finished(j)
                    yield j, e
                continue
            for row, j in enumerate(ready):
                last = j.k == len(j.plan) - 1
                try:
                    j.stitcher.add(
                        j.plan.index(j.k, j.rate),
                        decoded[row],
                        None if last else j.plan.index(j.k + 1, j.rate),
                    )
                    j.prev, j.k = tokens[row], j.k + 1
                    if not last:
                        continue
                    result: Any = j.sink.finish()
                    j.source.close()
                except Exception as e:  # its output went bad
                    j.close()
                    result = e
                active.remove(j)
                progress.finished(j)
                yield j, result
    finally:
        for j in active:
            j.close()


# ------------------------------------------------------------------------------ media tensors


def dub(
    engine: Engine, frames: torch.Tensor, sampling: Sampling = _DEFAULT, **kw: Any
) -> torch.Tensor:
    """Video to audio. frames uint8 (B, T, H, W, 3) at the preset's fps and size -> waveform
    (B, round(T / fps * 16000)) float32, or (B, samples, S) when samples > 1. Keywords as
    `generate`."""
    return generate(engine, "v2a", frames, sampling, **kw)


def animate(
    engine: Engine, wav: torch.Tensor, sampling: Sampling = _DEFAULT, **kw: Any
) -> torch.Tensor:
    """Audio to video. wav (B, S) float at 16 kHz -> frames uint8 (B, round(S / 16000 * fps),
    H, W, 3) at the preset's fps and size, or (B, samples, T, H, W, 3) when samples > 1.
    Keywords as `generate`."""
    return generate(engine, "a2v", wav, sampling, **kw)


def generate(
    engine: Engine,
    direction: str,
    inputs: torch.Tensor,
    sampling: Sampling = _DEFAULT,
    *,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    samples: int = 1,
    callback: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Media tensors of any length in, media of the same duration out (see `dub`, `animate`).

    seed: the base seed of clip i's sample j is clip_seed(seed, i, j); seeds (one per clip)
    override it as clip_seed(seeds[i], 0, j). callback: (steps done, total) of each round.
    """
    p = engine.preset
    if direction == "v2a" and (inputs.dim() != 5 or inputs.dtype != torch.uint8):
        raise ValueError(f"dub wants uint8 frames (B, T, H, W, 3), got {tuple(inputs.shape)}")
    if direction == "a2v" and inputs.dim() != 2:
        raise ValueError(f"animate wants a waveform (B, S), got {tuple(inputs.shape)}")
    rate = p.video.fps if direction == "v2a" else p.audio.sample_rate
    if seeds is not None and len(seeds) != inputs.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {inputs.shape[0]} clips")
    plan = WindowPlan.make(p, inputs.shape[1] / rate, overlap=sampling.overlap)
    host = inputs.cpu().numpy()
    jobs = [
        Job(
            direction,
            plan,
            ArraySource(host[i], plan, p, direction),
            ArraySink(),
            clip_seed(seed, i, j) if seeds is None else clip_seed(seeds[i], 0, j),
            tag=(i, j),
        )
        for i in range(inputs.shape[0])
        for j in range(samples)
    ]
    out: dict[Any, np.ndarray] = {}
    for job, result in run_jobs(engine, jobs, sampling, progress=Progress(step=callback)):
        if isinstance(result, BaseException):
            raise result
        out[job.tag] = result
    rows = [
        torch.from_numpy(np.stack([out[(i, j)] for j in range(samples)]))
        for i in range(inputs.shape[0])
    ]
    stacked = torch.stack(rows)  # (B, samples, ...)
    return stacked[:, 0] if samples == 1 else stacked
