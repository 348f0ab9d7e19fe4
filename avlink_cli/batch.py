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

Generation is behind one seam, `load_model()`: a `streaming.FileGenerator` (inputs batched on the
device, any length, streamed to temporary files), or any object with `dub(info, gen, seed)` /
`animate(...)` returning one `Generated` per sample (test doubles).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from avlink_cli import media, shutdown
from avlink_cli.files import is_part, remove_stale_parts
from avlink_cli.outputs import (  # re-exported: the runner's vocabulary
    ANIMATE,
    DUB,
    Generated,
    Task,
    UsageError,
    append_manifest,
    check_manifest,
    check_output,
    default_manifest,
    plan_outputs,
    write,
)
from avlink_cli.presets import GEN_BATCH, Preset
from avlink_cli.windows import max_overlap, window_stride

logger = logging.getLogger(__name__)


class ModelError(Exception):
    """No usable model; one line for the user."""


@dataclass(frozen=True)
class ModelOptions:
    """How to find and run the model (shared by every command that loads one)."""

    model: str = "avsynth-s"
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    offline: bool = False
    compile: bool = False  # torch.compile the backbone and Fusion blocks
    cuda_graphs: bool = False  # replay each velocity call as one CUDA graph (CUDA only)
    threads: int | None = None  # CPU threads; None: threads.choose's policy


@dataclass(frozen=True)
class GenOptions:
    """Sampling options; None means the model's own default."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    cfg: float | None = None
    samples: int = 1
    sampler: str = "euler"
    mix_original: float | None = None  # dub only: gain of the input's own soundtrack (mix)
    original_audio: str = "replace"  # dub only: replace | keep | mix (media.sound)
    sample_rate: int | None = None  # dub only: written rate (default 48 kHz video, 16 kHz wav)
    batch_size: int = GEN_BATCH  # clips sampled together on the device
    overlap: float = 1.0  # seconds shared by consecutive windows of a long input
    size: tuple[int, int] | None = None  # animate only: (width, height) the video is scaled to
    preview: bool = False  # a PNG beside each output (previews.py)

    @property
    def original(self) -> str:
        """What dub does with an input's own soundtrack; a --mix-original gain means mix."""
        return "mix" if self.mix_original is not None else self.original_audio

    @property
    def mix_gain(self) -> float:
        return 1.0 if self.mix_original is None else self.mix_original


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


# ------------------------------------------------------------------------------ inputs and outputs


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
def load_model(opts: ModelOptions) -> Any:
    """Resolve ``--model`` (hub.resolve_model) and load it once per process, as a
    `streaming.FileGenerator`. Every reason there is no usable model is a ModelError."""
    from avlink_cli import threads

    choice = threads.configure(opts.threads)  # imports torch: the load probe's window
    from avlink_cli.checkpoint import ModelFolderError
    from avlink_cli.hub import HubError
    from avlink_cli.pipeline import Engine
    from avlink_cli.streaming import FileGenerator

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
    return FileGenerator(engine, threads=choice.threads)


@dataclass
class _Job:
    """A validated input with the sample indices still to write."""

    info: media.MediaInfo
    outs: list[Path]  # one per sample
    todo: list[int]  # sample indices whose output is missing (or to be overwritten)
    res: Result
    t0: float


def _generate(
    model: Any, task: Task, jobs: Iterable[_Job], gen: GenOptions, opts: ModelOptions, progress
) -> Iterator[tuple[_Job, dict[int, Generated] | BaseException]]:
    """(job, generated sample by index | exception) for every job, in completion order."""
    from avlink_cli.pipeline import clip_seed

    if not hasattr(model, "generate_files"):  # a plain model: one input at a time, in memory
        for job in jobs:
            try:
                seed, t0 = clip_seed(opts.seed, job.info.path.name), time.perf_counter()
                samples = getattr(model, task.name)(job.info, gen, seed)
                job.res.seconds += time.perf_counter() - t0
                yield job, {i: samples[i] for i in job.todo}
            except Exception as e:
                yield job, e
        return
    from avlink_cli.streaming import FileJob

    file_jobs = (FileJob(j.info, j.info.path.name, tuple(j.todo), tag=j) for j in jobs)
    files = model.generate_files(
        task.name,
        file_jobs,
        seed=opts.seed,
        prompt=gen.prompt,
        negative_prompt=gen.negative_prompt,
        steps=gen.steps,
        cfg=gen.cfg,
        sampler=gen.sampler,
        overlap=gen.overlap,
        batch_size=gen.batch_size,
        progress=progress,
    )
    with contextlib.closing(files):
        for fj, out in files:
            if isinstance(out, BaseException):
                yield fj.tag, out
            else:
                yield fj.tag, {i: Generated(**d) for i, d in zip(fj.indices, out, strict=True)}


# ------------------------------------------------------------------------------ shards, manifest


def shard() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return rank, world


class BatchProgress:
    """What `run` reports as it goes (and what `longform.run_jobs` calls); does nothing here."""

    def start(self, total: int) -> None:
        """`total` inputs will be reported."""

    def done(self, res: Result) -> None:
        """One input is finished (ok, skipped or failed)."""

    def round(self, jobs: list, windows: list[int]) -> None:
        """A batched sampling round starts (longform.Progress)."""

    def step(self, done: int, total: int) -> None:
        """A sampling step of the round is done."""

    def finished(self, job: Any) -> None:
        """A clip (one sample of one input) is finished."""


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
    progress: BatchProgress | None = None,
) -> Iterator[Result]:
    """Process every input of this shard, yielding one Result each as it finishes; never raises
    for an input. Raises UsageError (before any work) when the command line itself is wrong,
    MediaError when the manifest cannot be written."""
    progress = progress or BatchProgress()
    items, many = expand_inputs(specs, task)
    plans = plan_outputs([p for p, _ in items], output, task, gen.samples, many=many)
    check_overlap(gen.overlap, model_preset(opts.model))
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

    def jobs() -> Iterator[_Job]:
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
                yield _Job(info, outs, todo, res, t0)
            except Exception as e:
                res.seconds = time.perf_counter() - t0
                pending.append(finish(_failed(res, e, src), log=not problem))

    stream = jobs()
    first = next(stream, None)
    yield from _drain(pending)
    if first is None:
        return
    try:
        model = load_model(opts)
    except ModelError as e:
        for job in itertools.chain([first], stream):
            job.res.kind = "model"
            yield finish(_failed(job.res, e, job.info.path))
            yield from _drain(pending)
        return
    check_overlap(gen.overlap, getattr(getattr(model, "engine", None), "preset", None))
    from avlink_cli.pipeline import clip_seed

    what = {}
    if hasattr(model, "provenance"):
        what = model.provenance(task.name, steps=gen.steps, cfg=gen.cfg, sampler=gen.sampler)
    # closed however this generator ends (an error, SIGTERM, the caller stopping): the model's
    # scratch files and ffmpeg processes go at once, not whenever the garbage collector runs
    results = _generate(model, task, itertools.chain([first], stream), gen, opts, progress)
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
    from avlink_cli import __version__

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
