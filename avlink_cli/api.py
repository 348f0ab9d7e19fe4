"""The Python API: file in, file out, exactly as the command line does it.

    from avlink_cli import dub_file, animate_file

    rec = dub_file("clip.mp4", "clip.dubbed.mp4", seed=0)   # the record `avlink dub --json` prints
    rec = animate_file("drums.wav", "drums.mp4", steps=25)

Both run the CLI's own batch runner (`batch.run`) with the same defaults, so the same input,
seed and options give the same output file, byte for byte, as `avlink dub` / `avlink animate`.
The model is loaded once per process and options (`batch.load_model` keeps the last two).
Tensor-level use is `longform.dub(Engine.from_folder("avsynth-s"), frames, Sampling())`
(`pipeline.py`, `longform.py`); its seeds are keyed by the clip's index in the batch, not by a
file name, so its output equals the CLI's only when given the same per-clip seeds
(`pipeline.clip_seed(seed, file_name)`).

Thread count: as the CLI's policy (threads.py) without its environment changes: torch's intra-op
threads are set to the CPUs not busy (by the load average) unless `threads` is given or
OMP_NUM_THREADS is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .batch import run
from .options import GenOptions, ModelOptions, Sampling
from .outputs import ANIMATE, DUB, Task


class AvlinkError(Exception):
    """An input could not be turned into an output; the message is the CLI's error line."""


def dub_file(
    input: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    original_audio: str = "replace",
    mix_original: float | None = None,
    sample_rate: int | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Give a video a generated soundtrack (as `avlink dub INPUT -o OUTPUT`).

    Returns the --json record (output path, seed, model revision, ...). An output that exists is
    skipped (status "skipped") unless overwrite=True. Raises AvlinkError when the input fails.
    Other keywords, with the command line's defaults: samples, model, device, dtype, seed,
    threads, offline, overwrite, and those of `options.Sampling` (prompt, negative_prompt, steps,
    cfg, sampler, overlap, batch_size).
    """
    own = dict(original_audio=original_audio, mix_original=mix_original, sample_rate=sample_rate)
    return _run(DUB, input, output, own, **kw)


def animate_file(
    input: str | os.PathLike, output: str | os.PathLike | None = None, **kw: Any
) -> dict[str, Any]:
    """Make a video for a sound file (as `avlink animate INPUT -o OUTPUT`); see `dub_file`."""
    return _run(ANIMATE, input, output, {}, **kw)


def _run(
    task: Task,
    input: str | os.PathLike,
    output: str | os.PathLike | None,
    own: dict[str, Any],
    *,
    samples: int = 1,
    model: str | os.PathLike = "avsynth-s",
    device: str = "auto",
    dtype: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    offline: bool = False,
    overwrite: bool = False,
    **sampling: Any,
) -> dict[str, Any]:
    options = GenOptions(Sampling(**sampling), samples=samples, **own)
    opts = ModelOptions(str(model), device, dtype, seed, offline, threads=threads)
    out = None if output is None else str(Path(output))
    (res,) = run(task, [str(Path(input))], out, gen=options, opts=opts, overwrite=overwrite)
    if res.status == "error":
        raise AvlinkError(res.error)
    return res.record()
