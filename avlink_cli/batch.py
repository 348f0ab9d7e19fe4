"""The dub/animate batch runner: inputs -> validate (probe) -> plan outputs -> generate -> write.

Inputs are files, folders (their media files, not recursive) or glob patterns. Each input is
validated and its output path checked *before* any model is loaded, so bad input fails fast and
the same way with or without a model. A bad input never stops the batch: it becomes a failed
`Result` and the runner moves on. Writes are atomic (see media.atomic_output).

Generation is behind one seam, `generate()`: it gets the probed input and the options and returns
arrays; it knows nothing of paths. The model issues fill in `load_model()`.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avlink_cli import media

logger = logging.getLogger(__name__)

VIDEO_INPUTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
AUDIO_INPUTS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")


class UsageError(Exception):
    """The command line itself is wrong (exit code 2), not one of its inputs."""


class ModelError(Exception):
    """No usable model; one line for the user."""


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


@dataclass(frozen=True)
class ModelOptions:
    """How to find and run the model (shared by every command that loads one)."""

    model: str = "avsynth-s"
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    offline: bool = False


@dataclass(frozen=True)
class GenOptions:
    """Sampling options; None means the model's own default."""

    prompt: str = ""
    negative_prompt: str = ""
    steps: int | None = None
    cfg: float | None = None
    samples: int = 1
    sampler: str = "euler"
    mix_original: float | None = None  # dub only: gain of the input's own soundtrack


@dataclass
class Generated:
    """One generated sample: a waveform (dub) or frames (animate), at the input's duration."""

    wav: np.ndarray | None = None  # (S,) float32 in [-1, 1]
    sample_rate: int | None = None
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8, frame k at k / fps
    fps: float | None = None


@dataclass
class Result:
    """The outcome for one input; `record()` is what --json prints."""

    input: str
    outputs: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok" | "error"
    error: str | None = None
    seconds: float = 0.0
    kind: str = "input"  # what failed: "input" (names its file), "model" or "internal"

    def record(self) -> dict:
        rec = {"input": self.input, "output": self.outputs[0] if self.outputs else None}
        if len(self.outputs) > 1:
            rec["outputs"] = self.outputs
        rec |= {"status": self.status, "error": self.error, "seconds": round(self.seconds, 3)}
        return rec


# ------------------------------------------------------------------------------ inputs and outputs


def expand_inputs(specs: list[str], task: Task) -> tuple[list[tuple[Path, str | None]], bool]:
    """(input, problem or None) pairs, and whether this is a batch (-o then names a folder).

    Files are taken as given; folders (not recursive) and glob patterns give their media files,
    sorted, skipping earlier outputs (``*.dubbed.*``, ``*.animated.*``). A folder or pattern
    with nothing to take is kept with its problem, so that it is reported like a bad file.
    """
    items: list[tuple[Path, str | None]] = []
    many = len(specs) > 1
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            hits = sorted(c for c in p.iterdir() if c.is_file())
        elif glob.has_magic(spec) and not p.exists():
            hits = sorted(Path(h) for h in glob.glob(spec) if Path(h).is_file())
        else:
            items.append((p, None))
            continue
        many = True
        picked = [h for h in hits if h.suffix.lower() in task.scan and not _is_output(h)]
        kind = "video" if task is DUB else "audio"
        where = "in this folder" if p.is_dir() else f"among the {len(hits)} files it matches"
        problem = f"{spec}: no {kind} files ({' '.join(task.scan)}) {where}"
        if not hits and not p.is_dir():
            problem = f"{spec}: no files match"
        items += [(h, None) for h in picked] if picked else [(p, problem)]
    return list(dict.fromkeys(items)), many


def _is_output(path: Path) -> bool:
    return Path(path.stem).suffix in (".dubbed", ".animated")


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
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise media.MediaError(f"{path}: cannot write there, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise media.MediaError(f"{path}: cannot write there, folder {parent} is not writable")


def validate(task: Task, src: Path, gen: GenOptions) -> media.MediaInfo:
    """Probe the input and check it has what the task needs (raises MediaError)."""
    info = media.probe(src)
    if task is DUB and not info.has_video:
        raise media.MediaError(f"{src}: has no video stream; dub needs a video")
    if task is DUB and gen.mix_original is not None and not info.has_audio:
        raise media.MediaError(f"{src}: has no soundtrack for --mix-original")
    if task is ANIMATE and not info.has_audio:
        raise media.MediaError(f"{src}: has no audio stream; animate needs sound")
    return info


# ------------------------------------------------------------------------------ generation seam


@functools.lru_cache(maxsize=2)
def load_model(opts: ModelOptions) -> object:
    """Resolve ``--model`` and load it once per process. Placeholder until the model exists.

    The model issues replace this body (hub.resolve_model, strict safetensors load) and return
    an object with ``dub(info, gen, seed) -> list[Generated]`` and ``animate(...)`` likewise.
    """
    folder = Path(opts.model).expanduser()
    if not folder.is_dir():
        folder = Path(__file__).resolve().parent.parent / "weights" / opts.model
    if not folder.is_dir():
        raise ModelError(
            f"no model '{opts.model}': weights/{opts.model}/ not found and no network download attempted"
        )
    raise ModelError(f"no model '{opts.model}': loading models is not implemented yet ({folder})")


def generate(
    task: Task, info: media.MediaInfo, gen: GenOptions, opts: ModelOptions
) -> list[Generated]:
    """Generate ``gen.samples`` outputs for one validated input, at the input's duration."""
    model = load_model(opts)
    return getattr(model, task.name)(info, gen, opts.seed)


def write(
    task: Task, info: media.MediaInfo, out: Path, g: Generated, *, gen: GenOptions, overwrite: bool
) -> None:
    """Write one generated sample for input ``info`` to ``out`` (atomic, via media)."""
    if task is DUB and out.suffix.lower() in media.AUDIO_SUFFIXES:
        media.write_audio(out, g.wav, g.sample_rate, overwrite=overwrite)
    elif task is DUB:
        media.mux_audio(
            info.path, g.wav, g.sample_rate, out, mix_original=gen.mix_original, overwrite=overwrite
        )
    else:
        sr = min(info.sample_rate or 48_000, 48_000)
        audio = media.read_audio(info.path, sample_rate=sr, duration=len(g.frames) / g.fps)
        media.write_video(out, g.frames, g.fps, audio=audio, sample_rate=sr, overwrite=overwrite)


# ------------------------------------------------------------------------------ the loop


def run(
    task: Task,
    specs: list[str],
    output: str | None,
    *,
    gen: GenOptions,
    opts: ModelOptions,
    overwrite: bool = False,
) -> Iterator[Result]:
    """Process every input, yielding one Result each as it finishes; never raises for an input.

    Raises UsageError (before any work) when the command line itself is wrong.
    """
    items, many = expand_inputs(specs, task)
    plans = plan_outputs([p for p, _ in items], output, task, gen.samples, many=many)
    claimed: set[Path] = set()
    model_error: ModelError | None = None
    for (src, problem), outs in zip(items, plans, strict=True):
        t0 = time.perf_counter()
        res = Result(str(src), [str(o) for o in outs])
        try:
            if problem:
                raise media.MediaError(problem)
            info = validate(task, src, gen)
            for o in outs:
                check_output(o, src, overwrite=overwrite)
                if o.resolve() in claimed:
                    raise media.MediaError(f"{o}: would be written twice in this batch")
                claimed.add(o.resolve())
            if model_error is not None:
                raise model_error
            samples = generate(task, info, gen, opts)
            for o, g in zip(outs, samples, strict=True):
                write(task, info, o, g, gen=gen, overwrite=overwrite)
        except Exception as e:  # one bad input must not stop the batch
            if isinstance(e, ModelError):
                model_error, res.kind = e, "model"
            elif not isinstance(e, media.MediaError):
                res.kind = "internal"
                logger.debug("failed on %s", src, exc_info=True)
            res.status, res.error, res.outputs = "error", one_line(e), []
        res.seconds = time.perf_counter() - t0
        yield res


def one_line(e: BaseException) -> str:
    """An exception as one line: our own errors as they are, others with their type."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if type(e).__module__.startswith("avlink_cli") else f"{type(e).__name__}: {text}"
