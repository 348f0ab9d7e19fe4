"""Inputs of any length: windows of the model's clip length, continued across seams, stitched.

Plan (`windows.WindowPlan`, re-exported here). Windows start on a grid of q seconds every
`window - overlap` seconds; an input no longer than one window is one padded window.

Seams (inpainting). Window k + 1 starts inside window k: its first tokens cover instants window k
has already generated. While window k + 1 is sampled, those tokens are held on the straight flow
path from this window's noise x0 to window k's final tokens, x_t = t * prev + (1 - t) * x0, the
same as replacing them by `flow.interpolate(x0, prev, t)` after every step; the rest of the window
is generated attending to them (self-attention, Fusion), so sound and picture continue the
previous window, and at t = 1 the overlap tokens equal window k's exactly (`Engine.sample`).

Stitching. Decoded windows are cross-faded over the overlap: audio with equal-power (sin/cos)
gains, frames linearly. Output length is the input's own duration: round(duration * rate).

Memory is bounded by the window: a clip in flight holds one window of input (its `Source`), the
previous window's tokens, and the decoded part still to be faded (its `Stitcher`); everything
else goes to its `Sink` as soon as it is final.

Batching. `run_jobs` keeps up to `batch_size` clips in flight and samples the next window of each
in one batched call; a clip that finishes frees its slot for the next, so clips of different
lengths share the device. Each clip draws its noise from its own generator: its result does not
depend on what it was batched with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from . import shutdown
from .presets import Preset
from .windows import WindowPlan, time_quantum  # noqa: F401 - the plan, re-exported

if TYPE_CHECKING:
    from .pipeline import Engine


def crossfade(tail: np.ndarray, head: np.ndarray, *, equal_power: bool) -> np.ndarray:
    """Fade from `tail` (the earlier window) to `head` over their common length (axis 0)."""
    n = len(tail)
    u = (np.arange(n, dtype=np.float32) + 0.5) / n
    w_in, w_out = (np.sin(u * np.pi / 2), np.cos(u * np.pi / 2)) if equal_power else (u, 1 - u)
    shape = (n,) + (1,) * (tail.ndim - 1)
    mixed = tail.astype(np.float32) * w_out.reshape(shape) + head.astype(np.float32) * w_in.reshape(
        shape
    )
    return mixed.round().clip(0, 255).astype(np.uint8) if tail.dtype == np.uint8 else mixed


class Stitcher:
    """Joins decoded windows along axis 0 into one stream of `total` items, writing each part as
    soon as no later window can change it."""

    def __init__(self, total: int, write: Callable[[np.ndarray], None], *, equal_power: bool):
        self.total, self.write, self.equal_power = total, write, equal_power
        self.pos = 0  # items written so far
        self.tail: np.ndarray | None = None  # [pos, pos + len(tail)): to fade with the next window

    def add(self, start: int, chunk: np.ndarray, next_start: int | None) -> None:
        """chunk covers [start, start + len(chunk)); the next window starts at next_start."""
        if start != self.pos:
            raise ValueError(f"window starts at {start}, expected {self.pos}")
        if self.tail is not None and len(self.tail):
            n = min(len(self.tail), len(chunk))
            head = crossfade(self.tail[:n], chunk[:n], equal_power=self.equal_power)
            chunk = np.concatenate([head, chunk[n:]])
        cut = len(chunk) if next_start is None else next_start - start
        body = chunk[: max(0, min(cut, self.total - self.pos))]
        if len(body):
            self.write(body)
        self.pos += len(body)
        self.tail = None if next_start is None else chunk[cut:]


class Source(Protocol):
    """The conditioning input of one clip, window by window (k = 0, 1, ... in order)."""

    def window(self, k: int) -> np.ndarray: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where one clip's generated output goes, in order; `finish` returns the result."""

    def write(self, chunk: np.ndarray) -> None: ...

    def finish(self) -> Any: ...

    def close(self) -> None: ...


def pad_window(data: np.ndarray, n: int, *, hold: bool) -> np.ndarray:
    """Cut or pad to n items along axis 0: holding the last item (frames) or with zeros (audio)."""
    if len(data) >= n:
        return data[:n]
    pad = [(0, n - len(data))] + [(0, 0)] * (data.ndim - 1)
    return np.pad(data, pad, mode="edge" if hold and len(data) else "constant")


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


@dataclass
class ClipJob:
    """One clip to generate (one sample of one input)."""

    direction: str  # "v2a" | "a2v"
    plan: WindowPlan
    source: Source
    sink: Sink
    seed: int
    prompt: str = ""
    negative_prompt: str = ""
    tag: Any = None  # the caller's handle
    label: str = ""  # how progress displays name it
    seconds: float = 0.0  # compute time spent on it: its share of each batched round


class Progress:
    """Hooks `run_jobs` calls; this base passes sampling steps to `step` if given, no more."""

    def __init__(self, step: Callable[[int, int], None] | None = None) -> None:
        self._step = step

    def round(self, jobs: list[ClipJob], windows: list[int]) -> None:
        """A batched sampling round starts: jobs[i] is at window windows[i]."""

    def step(self, done: int, total: int) -> None:
        """A sampling step of the current round is done."""
        if self._step is not None:
            self._step(done, total)

    def finished(self, job: ClipJob) -> None:
        """A clip is complete (or failed)."""


@dataclass
class _Stream:
    """A clip in flight: its next window, noise generator and previous window's tokens."""

    job: ClipJob
    stitcher: Stitcher
    rate: float  # output items per second
    k: int = 0
    prev: torch.Tensor | None = None  # (N_gen, token_dim), on the device
    gen: torch.Generator = field(default_factory=torch.Generator)

    def close(self) -> None:
        for part in (self.job.source, self.job.sink):
            part.close()


def _token_rate(preset: Preset, direction: str) -> tuple[Fraction, int]:
    """Generated side: (token groups per second, tokens per group)."""
    if direction == "v2a":
        return Fraction(preset.audio.tokens_per_second).limit_denominator(10_000), 1
    v = preset.video
    return Fraction(v.tokens_per_second).limit_denominator(10_000), v.tokens_per_frame_group


def _sample_round(
    engine: Engine, streams: list[_Stream], raws: list[np.ndarray], **opts: Any
) -> torch.Tensor:
    """Sample the next window of every stream in one batch -> tokens (B, N_gen, token_dim)."""
    direction = streams[0].job.direction
    if any(s.job.direction != direction for s in streams):
        raise ValueError("one batch mixes v2a and a2v clips")
    (n_gen, d_gen), (n_cnd, d_cnd) = engine.token_shape(direction)
    x0 = torch.stack([torch.randn(n_gen, d_gen, generator=s.gen) for s in streams])
    cond_noise = torch.stack([torch.randn(n_cnd, d_cnd, generator=s.gen) for s in streams])
    known = mask = None
    if any(s.prev is not None for s in streams):
        rate, per = _token_rate(engine.preset, direction)
        known = torch.zeros(len(streams), n_gen, d_gen, device=engine.device)
        mask = torch.zeros(len(streams), n_gen, dtype=torch.bool, device=engine.device)
        for row, s in enumerate(streams):
            if s.prev is None:
                continue
            plan = s.job.plan
            shift = round((plan.starts[s.k] - plan.starts[s.k - 1]) * rate) * per
            known[row, : n_gen - shift] = s.prev[shift:]
            mask[row, : n_gen - shift] = True
    cond = engine.encode(direction, torch.from_numpy(np.stack(raws)))
    return engine.sample(
        direction,
        cond,
        x0=x0,
        cond_noise=cond_noise,
        prompts=[s.job.prompt for s in streams],
        negative_prompts=[s.job.negative_prompt for s in streams],
        known=known,
        known_mask=mask,
        **opts,
    )


def run_jobs(
    engine: Engine,
    jobs: Iterable[ClipJob],
    *,
    batch_size: int = 8,
    steps: int | None = None,
    cfg: float | None = None,
    sampler: str = "euler",
    progress: Progress | None = None,
) -> Iterator[tuple[ClipJob, Any]]:
    """Generate every job, `batch_size` clips at a time; yield (job, sink result or exception)
    as each finishes. A failing clip (its input, its output) fails alone; a failing batched
    call fails the clips in that batch. `jobs` is consumed lazily, as slots free up."""
    progress = progress or Progress()
    pending, active = iter(jobs), []
    p = engine.preset
    try:
        while True:
            shutdown.check()  # each round: a SIGTERM that Python dropped stops here
            while len(active) < batch_size and (job := next(pending, None)) is not None:
                rate = p.audio.sample_rate if job.direction == "v2a" else p.video.fps
                stitcher = Stitcher(
                    job.plan.total(rate), job.sink.write, equal_power=job.direction == "v2a"
                )
                stream = _Stream(job, stitcher, rate)
                stream.gen.manual_seed(job.seed)
                active.append(stream)
            if not active:
                return
            t_round = time.perf_counter()
            ready, raws = [], []
            for s in list(active):
                try:
                    raws.append(s.job.source.window(s.k))
                    ready.append(s)
                except Exception as e:  # its input went bad: that clip only
                    active.remove(s)
                    s.close()
                    progress.finished(s.job)
                    yield s.job, e
            if not ready:
                continue
            progress.round([s.job for s in ready], [s.k for s in ready])
            try:
                tokens = _sample_round(
                    engine,
                    ready,
                    raws,
                    steps=steps,
                    cfg=cfg,
                    sampler=sampler,
                    callback=progress.step,
                )
                decoded = engine.decode(ready[0].job.direction, tokens).numpy()
                share = (time.perf_counter() - t_round) / len(ready)
                for s in ready:
                    s.job.seconds += share
            except Exception as e:
                for s in ready:
                    active.remove(s)
                    s.close()
                    progress.finished(s.job)
                    yield s.job, e
                continue
            for row, s in enumerate(ready):
                plan = s.job.plan
                last = s.k == len(plan) - 1
                try:
                    s.stitcher.add(
                        plan.index(s.k, s.rate),
                        decoded[row],
                        None if last else plan.index(s.k + 1, s.rate),
                    )
                    s.prev, s.k = tokens[row], s.k + 1
                    if not last:
                        continue
                    result: Any = s.job.sink.finish()
                    s.job.source.close()
                except Exception as e:  # its output went bad
                    s.close()
                    result = e
                active.remove(s)
                progress.finished(s.job)
                yield s.job, result
    finally:
        for s in active:
            s.close()
