"""AVSynth on disk: one clip per seed as mp4 (or an npz array cache) plus a JSON sidecar.

File names: ``<split>-<seed:07d>.mp4`` (or ``.npz``) and ``<split>-<seed:07d>.json``. The mp4
holds H.264 yuv420p video and AAC audio (what users and ``avlink eval`` see); the npz holds the
exact arrays (``frames`` (T, H, W, 3) uint8, ``audio`` (S,) float32 at the sidecar's
sample_rate), free of codec loss and decode time, for training. Every file is written to a
temporary name and moved into place; an existing file is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from avlink_cli.presets import Preset
from avlink_cli.synth import SEEDS_PER_SPLIT, Clip, ClipSpec, as_spec, global_seed, render_clip

FORMATS = ("mp4", "npz")


def sidecar_text(sidecar: dict) -> str:
    """The sidecar as JSON text; the same dict always gives the same bytes."""
    return json.dumps(sidecar, indent=1, ensure_ascii=False) + "\n"


def clip_stem(split: str, seed: int) -> str:
    return f"{split}-{seed:07d}"


def write_clip(clip: Clip, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a clip to ``path`` (.mp4 or .npz) and its sidecar beside it (.json).

    Both targets are checked first, so a refused write leaves nothing behind. Returns ``path``.
    """
    from avlink_cli.media import OutputExistsError, atomic_output, write_video

    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: AVSynth writes .mp4 or .npz, not '{path.suffix}'")
    side = path.with_suffix(".json")
    if not overwrite:
        for p in (path, side):
            if p.exists():
                raise OutputExistsError(f"{p}: already exists (not overwriting)")
    s = clip.sidecar
    if fmt == "mp4":
        write_video(
            path,
            clip.frames,
            s["fps"],
            audio=clip.audio,
            sample_rate=s["sample_rate"],
            overwrite=overwrite,
        )
    else:
        with atomic_output(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, frames=clip.frames, audio=clip.audio)
    with atomic_output(side, overwrite=overwrite) as tmp:
        tmp.write_text(sidecar_text(s), encoding="utf-8")
    return path


def load_clip(path: str | os.PathLike) -> Clip:
    """Read a clip written as .npz (exact arrays) with its .json sidecar."""
    path = Path(path)
    with np.load(path) as z:
        frames, audio = z["frames"], z["audio"]
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return Clip(frames, audio, sidecar)


def _one(job: tuple[ClipSpec, str, int, Path, bool]) -> Path:
    spec, split, seed, path, overwrite = job
    return write_clip(render_clip(spec, seed, split), path, overwrite=overwrite)


def synth_split(
    out_dir: str | os.PathLike,
    *,
    split: str = "train",
    count: int,
    seed: int = 0,
    preset: ClipSpec | Preset | str = "avsynth-s",
    workers: int = 1,
    overwrite: bool = False,
    fmt: str = "mp4",
    on_clip: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write clips ``seed .. seed + count - 1`` of ``split`` into ``out_dir``, in seed order.

    ``workers`` > 1 renders and encodes in that many processes. ``on_clip`` is called with
    each finished path (in order), e.g. to advance a progress bar. Returns the media paths.
    """
    from avlink_cli.media import OutputExistsError

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if count < 0 or seed + count > SEEDS_PER_SPLIT:
        raise ValueError(f"seeds {seed}..{seed + count - 1} leave the split's 0..9999999 range")
    global_seed(seed, split)  # validates split and seed
    spec = as_spec(preset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{clip_stem(split, seed + i)}.{fmt}" for i in range(count)]
    if not overwrite:
        clash = [p for p in paths if p.exists() or p.with_suffix(".json").exists()]
        if clash:
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise OutputExistsError(f"{clash[0]}: already exists{more} (not overwriting)")
    jobs = [(spec, split, seed + i, p, overwrite) for i, p in enumerate(paths)]
    done: list[Path] = []
    if workers <= 1 or count <= 1:
        results = map(_one, jobs)
        for p in results:
            done.append(p)
            if on_clip:
                on_clip(p)
        return done
    # spawn, not fork: the caller may hold threads (torch, rich) that a fork would copy mid-lock
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
        chunk = max(1, min(16, count // (4 * workers)))
        for p in ex.map(_one, jobs, chunksize=chunk):
            done.append(p)
            if on_clip:
                on_clip(p)
    return done


def benchmark(
    out_dir: str | os.PathLike,
    *,
    count: int = 200,
    workers: int = 2,
    fmt: str = "mp4",
    preset: ClipSpec | Preset | str = "avsynth-s",
) -> dict[str, float]:
    """Time synth_split into out_dir (which should be empty): clips per second, wall clock."""
    t0 = time.perf_counter()
    synth_split(out_dir, count=count, workers=workers, fmt=fmt, preset=preset, overwrite=True)
    dt = time.perf_counter() - t0
    return {"count": count, "workers": workers, "seconds": dt, "clips_per_s": count / dt}
