"""The commands around training: `avlink synth` (AVSynth clips), `avlink train` (a stage into a model
folder) and `avlink eval` (score sync). Torch and friends are imported inside their bodies.
"""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from avlink_cli.app import (
    CommandError,
    Device,
    DeviceOpt,
    JsonOpt,
    Log,
    OverwriteOpt,
    SeedOpt,
    ThreadsOpt,
    command,
    console,
    finite,
    prepare_threads,
)

# ------------------------------------------------------------------------------ synth


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


@command()
def synth(
    log: Log,
    out: Annotated[Path, typer.Argument(help="Folder for the clips and their JSON sidecars.")],
    split: Annotated[
        Split, typer.Option("--split", help="Seed range: train, val or test.")
    ] = Split.train,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="Number of clips.")] = 16,
    seed: SeedOpt = 0,
    preset: Annotated[
        str, typer.Option("--preset", help="Sizes and rates of the clips.")
    ] = "avsynth-s",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Parallel processes.")] = 2,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Render AVSynth clips (mp4 with sound) with sidecars of their true event times."""
    from rich.progress import Progress

    from avlink_cli.presets import get_preset
    from avlink_cli.synth import synth_split

    try:
        p = get_preset(preset)
    except KeyError as e:
        raise CommandError(str(e.args[0])) from None
    t0 = time.perf_counter()
    with Progress(console=console(), disable=as_json or log.quiet, transient=True) as bar:
        task = bar.add_task(f"synth {split.value}", total=count)
        paths = synth_split(
            out,
            split=split.value,
            count=count,
            seed=seed,
            preset=p,
            workers=workers,
            overwrite=overwrite,
            on_clip=lambda _: bar.advance(task),
        )
    dt = time.perf_counter() - t0
    if as_json:
        for path in paths:
            rec = {
                "type": "clip",
                "output": str(path),
                "sidecar": str(path.with_suffix(".json")),
            }
            typer.echo(json.dumps(rec))
    elif not log.quiet:
        typer.echo(f"{len(paths)} clips in {out} ({dt:.1f} s, {len(paths) / dt:.1f} clips/s)")


# ------------------------------------------------------------------------------ train


class Stage(str, Enum):
    vocoder = "vocoder"
    audio = "audio"
    video = "video"
    fusion = "fusion"
    all = "all"


ABLATIONS = {  # flag -> (Ablation field, value)
    "no-reinject": ("reinject_cond", False),
    "rope-index": ("rope_by_index", True),
    "uniform-t": ("uniform_t_cond", True),
    "external": ("external_features", True),
}


@command()
def train(
    log: Log,
    stage: Annotated[Stage, typer.Argument(help="vocoder, audio, video, fusion, or all in order.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to train into.")],
    preset: Annotated[str, typer.Option("--preset", help="Model sizes.")] = "avsynth-s",
    data: Annotated[
        str, typer.Option("--data", help="'avsynth' or a folder of videos with sound.")
    ] = "avsynth",
    clips: Annotated[
        int,
        typer.Option(
            "--clips", min=1, help="Training clips (AVSynth) or at most this many windows."
        ),
    ] = 2000,
    val_clips: Annotated[int, typer.Option("--val-clips", min=1, help="Validation clips.")] = 64,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Optimizer steps (default: per stage and preset)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Global batch size.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option("--lr", callback=finite, help="Peak learning rate.")
    ] = None,
    ablation: Annotated[
        list[str] | None,
        typer.Option("--ablation", help=f"Ablation switch: {', '.join(ABLATIONS)}."),
    ] = None,
    contact_hint: Annotated[
        float,
        typer.Option(
            "--contact-hint",
            callback=finite,
            min=0.0,
            max=1.0,
            help="Fusion stage: over this fraction of the steps, V2A's conditioning frames at "
            "known contacts (AVSynth's) fade from white to real, so the blocks learn where "
            "timing is in the video. 0 turns it off; real videos have no known contacts.",
        ),
    ] = 0.6,
    contact_loss: Annotated[
        float | None,
        typer.Option(
            "--contact-loss",
            callback=finite,
            min=0.0,
            help="Fusion stage: weight of an auxiliary loss that asks the motion path (and the "
            "motion context, where the preset has one) to mark the frames of known contacts "
            "(AVSynth's), on the real frames. Default: 0.1 where the preset has the motion "
            "path, else 0 (training/run.py).",
        ),
    ] = None,
    onset_weight: Annotated[
        float,
        typer.Option(
            "--onset-weight",
            callback=finite,
            min=0.0,
            help="Fusion stage: V2A's loss weighs each audio token by 1 + this x its onset "
            "strength (spectral flux) over the clip's mean, so the tokens where sounds start, "
            "the ones the video can time, count more. 0 (default) is the plain loss.",
        ),
    ] = 0.0,
    silent_weight: Annotated[
        float,
        typer.Option(
            "--silent-weight",
            callback=finite,
            min=0.0,
            help="Fusion stage: V2A's loss of clips in which nothing sounds (AVSynth lists "
            "every event; some of these clips show silent motion) weighs 1 + this, as if they "
            "were drawn that many times more often, to teach that motion without contact makes "
            "no sound. 0 (default) is the plain loss.",
        ),
    ] = 0.0,
    cache: Annotated[
        Path, typer.Option("--cache", help="Where decoded training arrays are cached.")
    ] = Path(".avlink-cache"),
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes that render/decode data.")
    ] = 2,
    time_limit: Annotated[
        float | None,
        typer.Option(
            "--time-limit",
            min=0.0,
            callback=finite,
            help="Minutes per stage; stop early (saved) when reached.",
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a stage into a model folder; resumes from its last checkpoint when re-run.

    Multi-process: torchrun --nproc_per_node N -m avlink_cli train STAGE --out DIR
    """
    prepare_threads()
    from avlink_cli import threads as threads_mod

    threads_mod.configure(threads)
    from avlink_cli.devices import resolve_device
    from avlink_cli.training.plan import run_training

    unknown = [a for a in ablation or [] if a not in ABLATIONS]
    if unknown:
        raise CommandError(f"--ablation {unknown[0]}: unknown; choose from {', '.join(ABLATIONS)}")
    switches = dict(ABLATIONS[a] for a in ablation or [])
    summaries = run_training(
        stage.value,
        out=out,
        preset_name=preset,
        data=data,
        clips=clips,
        val_clips=val_clips,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        ablation=switches,
        contact_hint=contact_hint,
        contact_loss=contact_loss,
        onset_weight=onset_weight,
        silent_weight=silent_weight,
        cache=cache,
        workers=workers,
        device=resolve_device(device.value),
        seed=seed,
        time_limit=None if time_limit is None else 60 * time_limit,
        quiet=as_json or log.quiet,
        console=console(),
    )
    for s in summaries:
        if as_json:
            typer.echo(json.dumps({"type": "stage"} | s))
        elif not log.quiet:
            typer.echo(_stage_line(s))


def _stage_line(s: dict) -> str:
    extra = ""
    if "mrstft_neural" in s:
        extra = f", MR-STFT {s['mrstft_neural']:.3f} (Griffin-Lim {s['mrstft_griffin_lim']:.3f})"
    return f"{s['stage']}: {s['steps']} steps in {s['seconds']:.0f} s, val loss {s['val_loss']:.4f}{extra}"


# ------------------------------------------------------------------------------ eval


class EvalMode(str, Enum):
    auto = "auto"
    v2a = "v2a"
    a2v = "a2v"


@command(name="eval")
def evaluate(
    log: Log,
    generated: Annotated[Path, typer.Argument(help="Folder of generated files.")],
    reference: Annotated[
        Path | None,
        typer.Option("--reference", "-r", help="Folder of references (matched by name)."),
    ] = None,
    sidecars: Annotated[
        Path | None,
        typer.Option("--sidecars", help="Folder of AVSynth JSON sidecars (true events)."),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write one PNG per clip into this folder.")
    ] = None,
    mode: Annotated[
        EvalMode, typer.Option("--mode", help="v2a scores audio, a2v scores video.")
    ] = EvalMode.auto,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print JSON Lines: one object per clip, then a summary."),
    ] = False,
) -> None:
    """Score sync: onset accuracy/AP (CondFoleyGen), timing errors, A2V event match, AV-Align."""
    from avlink_cli.evaluate import run_eval

    if not generated.is_dir():
        raise CommandError(f"{generated}: not a folder")
    try:
        result = run_eval(
            generated, reference=reference, sidecars=sidecars, plot_dir=plot, mode=mode.value
        )
    except ValueError as e:
        raise CommandError(str(e)) from None
    if as_json:
        for clip in result["clips"]:
            typer.echo(json.dumps({"type": "clip"} | clip))
        summary = {"type": "summary", "mode": result["mode"]} | result["summary"]
        typer.echo(json.dumps(summary))
        return
    if log.quiet:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sync ({result['mode']}, {len(result['clips'])} clips)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result["summary"].items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    Console().print(table)
