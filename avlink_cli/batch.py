"""The dub/animate batch runner: inputs -> shard -> validate (probe) -> plan outputs -> skip
what exists -> generate (batched on the device) -> write -> manifest.

Inputs are files, folders (their media files, not recursive) or glob patterns. Each input is
validated and its output path checked *before* the model is loaded, so bad input fails fast and
the same way with or without a model. A bad input never stops the batch: it becomes a failed
`Result` and the runner moves on. Writes are atomic (see media.atomic_output), so an output that
exists is complete: a batch run (folder, glob, several inputs) skips it, which makes a run that
was interrupted resumable by running it again (`overwrite` redoes everything); a single input
refuses to overwrite instead. Batch runs append one JSON line per input to a manifest.

Under torchrun (RANK / WORLD_SIZE set) each process takes the inputs i with i % WORLD_SIZE == RANK.

Reading inputs is `inputs`, writing outputs `outputs`; generation is `streaming.generate` (inputs
batched on the device, any length, streamed to temporary files) with the model `load_model()`
loads.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avlink_cli import media, shutdown
from avlink_cli.files import remove_stale_parts
from avlink_cli.inputs import Input, expand_inputs, validate
from avlink_cli.options import GenOptions, ModelOptions, Sampling
from avlink_cli.outputs import (
    DUB,
    Result,
    Task,
    UsageError,
    append_manifest,
    check_manifest,
    check_output,
    default_manifest,
    plan_outputs,
    write,
)
from avlink_cli.presets import Preset
from avlink_cli.progress import Progress
from avlink_cli.windows import max_overlap, window_stride

if TYPE_CHECKING:
    from avlink_cli.pipeline import Engine

logger = logging.getLogger(__name__)


class ModelError(Exception):
    """No usable model; one line for the user."""


def model_preset(spec: str) -> Preset | None:
    """The preset of the model `spec` names, from its model.json when that is on disk already
    (hub.model_json_on_disk): no weights loaded, no network. None when not known yet."""
    from avlink_cli.hub import model_json_on_disk

    path = model_json_on_disk(spec)
    try:
        return Preset.from_dict(json.loads(path.read_text())["preset"]) if path else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a broken folder: loading it says what is wrong


def check_overlap(overlap: float, preset: Preset | None) -> None:
    """UsageError unless `overlap` leaves a stride in the model's windows (None: not known)."""
    if preset is None:
        return
    try:
        window_stride(preset, overlap)
    except ValueError:
        raise UsageError(
            f"--overlap {overlap:g}: the model's windows are {preset.duration:g} s long; "
            f"the overlap must be at most {float(max_overlap(preset)):g} s"
        ) from None


# ------------------------------------------------------------------------------ generation seam


@functools.lru_cache(maxsize=2)
def load_model(opts: ModelOptions) -> tuple[Engine, int | None]:
    """Resolve ``--model`` (hub.resolve_model) and load it once per process: (the Engine, the
    CPU threads it runs with). Every reason there is no usable model is a ModelError."""
    from avlink_cli import threads

    choice = threads.configure(opts.threads)  # imports torch: the load probe's window
    from avlink_cli.checkpoint import ModelFolderError
    from avlink_cli.hub import HubError
    from avlink_cli.pipeline import Engine

    try:
        engine = Engine.from_folder(
            opts.model,
            device=opts.device,
            dtype=opts.dtype,
            offline=opts.offline or None,
            compile=opts.compile,
            cuda_graphs=opts.cuda_graphs,
        )
    except (HubError, ModelFolderError, ValueError) as e:
        raise ModelError(one_line(e).removeprefix("ValueError: ")) from e
    return engine, choice.threads


def provenance(engine: Engine, threads: int | None, task: Task, s: Sampling) -> dict[str, Any]:
    """What ran, for --json records, manifests, logs and container tags."""
    from avlink_cli.hub import describe_folder

    e, direction = engine, "v2a" if task is DUB else "a2v"
    return {
        "model": e.name,
        **(describe_folder(e.folder) if e.folder is not None else {}),
        "steps": e.default_steps(direction) if s.steps is None else s.steps,
        "cfg": e.default_cfg(direction) if s.cfg is None else s.cfg,
        "sampler": s.sampler,
        "device": str(e.device),
        "dtype": str(e.dtype).removeprefix("torch."),
        "threads": threads,
    }


# ------------------------------------------------------------------------------ shards


def shard() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world


# ------------------------------------------------------------------------------ the loop


def run(
    task: Task,
    specs: list[str],
    output: str | None,
    *,
    gen: GenOptions,
    opts: ModelOptions,
    overwrite: bool = False,
    manifest: str | Path | None = None,
    progress: Progress | None = None,
) -> Iterator[Result]:
    """Process every input of this shard, yielding one Result each as it finishes; never raises
    for an input. Raises UsageError (before any work) when the command line itself is wrong,
    MediaError when the manifest cannot be written."""
    progress = progress or Progress()
    items, many = expand_inputs(specs, task)
    plans = plan_outputs([p for p, _ in items], output, task, gen.samples, many=many)
    check_overlap(gen.sampling.overlap, model_preset(opts.model))
    rank, world = shard()
    seen: set[Path] = set()
    twice: set[tuple[int, Path]] = set()  # (input index, output) claimed by an earlier input
    for i, outs in enumerate(plans):
        for o in outs:
            if o.resolve() in seen:
                twice.add((i, o))
            seen.add(o.resolve())
    mine = [i for i in range(len(items)) if i % world == rank]
    log_path = Path(manifest) if manifest else default_manifest(output, plans) if many else None
    if log_path is not None:
        check_manifest(log_path)
    for folder in {o.parent for outs in plans for o in outs}:
        remove_stale_parts(folder)  # what killed runs were writing there
    pending: deque[Result] = deque()
    progress.start(len(mine))

    def finish(res: Result, *, log: bool = True) -> Result:
        if log and log_path is not None:
            rec = res.record() | {"base_seed": opts.seed, "time": _now()}
            append_manifest(log_path, rec | ({"rank": rank} if world > 1 else {}))
        progress.done(res)
        return res

    def jobs() -> Iterator[Input]:
        for i in mine:
            shutdown.check()  # a SIGTERM that Python dropped stops here (see shutdown)
            (src, problem), outs, t0 = items[i], plans[i], time.perf_counter()
            res = Result(str(src), [str(o) for o in outs], provenance={"model": opts.model})
            try:
                if problem:
                    raise media.MediaError(problem)
                info = validate(task, src, gen)
                res.media_duration = info.duration
                todo = []
                for n, o in enumerate(outs):
                    if (i, o) in twice:
                        raise media.MediaError(f"{o}: would be written twice in this batch")
                    if o.exists() and o.resolve() == src.resolve():
                        raise media.MediaError(f"{o}: output would replace its own input")
                    if not overwrite and o.is_file():
                        continue  # done by an earlier run: atomic writes make it complete
                    check_output(o, src, overwrite=overwrite)
                    if task is DUB and gen.original == "keep" and o.suffix in media.AUDIO_SUFFIXES:
                        raise media.MediaError(
                            f"{o}: an audio file holds one track; --original-audio keep "
                            "needs a video output (.mp4/.mov/.mkv)"
                        )
                    todo.append(n)
                res.seconds = time.perf_counter() - t0
                if not todo:
                    res.status = "skipped"
                    pending.append(finish(res))
                    continue
                if task is DUB and info.has_audio and gen.original == "replace":
                    if any(outs[n].suffix.lower() in media.VIDEO_SUFFIXES for n in todo):
                        res.notes.append(
                            f"{src}: has its own soundtrack ({info.sample_rate} Hz, "
                            f"{info.channels} ch); the output replaces it "
                            "(--original-audio keep or mix keeps it)"
                        )
                yield Input(info, outs, todo, res, t0)
            except Exception as e:
                res.seconds = time.perf_counter() - t0
                pending.append(finish(_failed(res, e, src), log=not problem))

    stream = jobs()
    first = next(stream, None)
    yield from _drain(pending)
    if first is None:
        return
    try:
        engine, threads = load_model(opts)
    except ModelError as e:
        for job in itertools.chain([first], stream):
            job.res.kind = "model"
            yield finish(_failed(job.res, e, job.info.path))
            yield from _drain(pending)
        return
    check_overlap(gen.sampling.overlap, engine.preset)
    from avlink_cli.pipeline import clip_seed
    from avlink_cli.streaming import generate

    what = provenance(engine, threads, task, gen.sampling)
    # closed however this generator ends (an error, SIGTERM, the caller stopping): the model's
    # scratch files and ffmpeg processes go at once, not whenever the garbage collector runs
    todo = itertools.chain([first], stream)
    results = generate(engine, task, todo, gen.sampling, seed=opts.seed, progress=progress)
    with contextlib.closing(results):
        for job, out in results:
            shutdown.check()
            yield from _drain(pending)
            res = job.res
            try:
                if isinstance(out, BaseException):
                    raise out
                seeds = [clip_seed(opts.seed, job.info.path.name, n) for n in job.todo]
                res.provenance = {"model": opts.model, **what, "seed": seeds[0]}
                if len(seeds) > 1:
                    res.provenance["seeds"] = seeds
                t0 = time.perf_counter()
                for n, seed in zip(job.todo, seeds, strict=True):
                    tags = container_tags(task, res.provenance | {"seed": seed})
                    written = write(
                        task,
                        job.info,
                        job.outs[n],
                        out[n],
                        original=gen.original,
                        mix_gain=gen.mix_gain,
                        sample_rate=gen.sample_rate,
                        metadata=tags,
                        size=gen.size,
                        overwrite=overwrite,
                    )
                    res.seconds += out[n].seconds
                    if written is not None:
                        res.provenance["sound"] = _sound(written)
                    if gen.preview:
                        from avlink_cli import previews

                        draw = previews.dub_preview if task is DUB else previews.animate_preview
                        pngs = res.provenance.setdefault("previews", [])
                        pngs.append(str(draw(job.outs[n], job.info.path)))
                res.seconds += time.perf_counter() - t0
                res.duration = job.info.duration * len(job.todo)
                logger.info("%s: %s", job.info.path.name, _describe_run(res.provenance))
            except Exception as e:  # one bad input must not stop the batch
                _failed(res, e, job.info.path)
            yield finish(res)
    yield from _drain(pending)


def container_tags(task: Task, provenance: dict[str, Any]) -> dict[str, str]:
    """Tags for the output's container: that its sound (dub) or picture (animate) was generated,
    by what, and how (the same provenance as the --json record)."""
    from avlink_cli.version import __version__

    generated = "audio" if task is DUB else "video"
    keys = ("model", "model_revision", "model_sha", "seed", "steps", "cfg", "sampler", "device")
    what = {k: provenance[k] for k in keys if provenance.get(k) is not None}
    comment = {"generated": generated, "by": f"avlink {__version__}", **what}
    return {
        "comment": json.dumps(comment, separators=(",", ":")),
        "avlink_generated": generated,
    }


def _sound(w: media.Written) -> dict[str, Any]:
    lufs = None if w.loudness_lufs is None else round(w.loudness_lufs, 2)
    return {"sample_rate": w.sample_rate, "channels": w.channels} | {
        "gain_db": round(w.gain_db, 2),
        "loudness_lufs": lufs,
    }


def _describe_run(p: dict[str, Any]) -> str:
    keys = ("model", "model_path", "model_revision", "model_sha", "device", "dtype", "threads")
    keys += ("steps", "cfg", "sampler", "seed", "seeds")
    return ", ".join(f"{k} {p[k]}" for k in keys if p.get(k) is not None)


def _failed(res: Result, e: BaseException, src: Path) -> Result:
    if isinstance(e, ModelError):
        res.kind = "model"
    elif not isinstance(e, media.MediaError) and res.kind != "model":
        res.kind = "internal"
        logger.debug("failed on %s", src, exc_info=e)
    res.status, res.error, res.outputs = "error", one_line(e), []
    return res


def _drain(pending: deque[Result]) -> Iterator[Result]:
    while pending:
        yield pending.popleft()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def one_line(e: BaseException) -> str:
    """An exception as one line: our own errors as they are, others with their type."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if type(e).__module__.startswith("avlink_cli") else f"{type(e).__name__}: {text}"
