"""The two generation commands, `avlink dub` and `avlink animate`: each maps its arguments to
one `batch.run` and prints its results (one line, or one --json record, per input).
"""

from __future__ import annotations

import contextlib
import json
from types import SimpleNamespace
from typing import Annotated, Any

import typer

from avlink_cli.app import (
    BatchSizeOpt,
    CfgOpt,
    CompileOpt,
    CudaGraphsOpt,
    Device,
    DeviceOpt,
    Dtype,
    DtypeOpt,
    InputsArg,
    JsonOpt,
    Log,
    ManifestOpt,
    ModelOpt,
    NegativeOpt,
    OfflineOpt,
    OriginalAudio,
    OutputOpt,
    OverlapOpt,
    OverwriteOpt,
    PreviewOpt,
    PromptOpt,
    Sampler,
    SamplerOpt,
    SamplesOpt,
    SeedOpt,
    StepsOpt,
    ThreadsOpt,
    command,
    finite,
    prepare_threads,
)
from avlink_cli.presets import GEN_BATCH

# ------------------------------------------------------------------------------ dub / animate


def _run_batch(
    task_name: str,
    inputs: list[str],
    output: str | None,
    *,
    gen,
    opts,
    overwrite: bool,
    as_json: bool,
    quiet: bool = False,
    manifest: str | None = None,
) -> int:
    """Run a batch, print each result as it finishes, return the exit code.

    Results go to stdout as they finish (with --json one record each, and a batch ends with one
    ``"type": "summary"`` record); inputs skipped because their output exists are said on
    stderr. On a terminal (and without --json or -q) a live progress display runs on stderr,
    and a batch ends with a one-line summary there.
    """
    import sys
    import time

    from rich.console import Console

    from avlink_cli import batch
    from avlink_cli.outputs import ANIMATE, DUB, summary_record
    from avlink_cli.progress import Progress, RichProgress, summary

    task = DUB if task_name == "dub" else ANIMATE
    console = Console(stderr=True)
    live = not as_json and not quiet and sys.stderr.isatty()
    progress = RichProgress(console) if live else Progress()
    results: list = []
    shown_model_error = False
    t0 = time.perf_counter()
    runs = batch.run(
        task,
        inputs,
        output,
        gen=gen,
        opts=opts,
        overwrite=overwrite,
        manifest=manifest,
        progress=progress,
    )
    # closed at once however the loop ends (SIGTERM included): temporary files go with it
    with progress if live else contextlib.nullcontext(), contextlib.closing(runs):
        for res in runs:
            results.append(res)
            for note in res.notes if res.status == "ok" and not quiet else []:
                typer.echo(f"note: {note}", err=True)
            if as_json:
                typer.echo(json.dumps(res.record()))
            if res.status == "skipped":
                if not quiet:
                    outs = ", ".join(res.outputs)
                    typer.echo(f"skipped: {outs} exists (--overwrite replaces it)", err=True)
                continue
            if res.status == "ok":
                if not as_json and not quiet:
                    typer.echo(f"{res.input} -> {', '.join(res.outputs)} ({res.seconds:.1f} s)")
                continue
            if res.kind == "model":
                if not shown_model_error:  # the same for every input: say it once
                    typer.echo(f"error: {res.error}", err=True)
                shown_model_error = True
            elif res.kind == "internal":
                typer.echo(f"error: {res.input}: {res.error}", err=True)
            else:
                typer.echo(f"error: {res.error}", err=True)
    failed = [r.input for r in results if r.status == "error"]
    wall = time.perf_counter() - t0
    if as_json and len(results) > 1:
        typer.echo(json.dumps(summary_record(results, wall)))
    if not quiet and not as_json and (len(results) > 1 or (live and results)):
        summary(console, results, wall)
    if failed and len(results) > 1:
        names = ", ".join(failed[:10]) + (
            f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        )
        typer.echo(f"error: {len(failed)} of {len(results)} inputs failed: {names}", err=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------ their options
# Declared once: a command's signature is the shared head, its own options, the shared tail
# (`app.command`), the order --help lists them in.


def _head(
    inputs: InputsArg,
    output: OutputOpt = None,
    prompt: PromptOpt = "",
    negative_prompt: NegativeOpt = "",
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    samples: SamplesOpt = 1,
    sampler: SamplerOpt = Sampler.euler,
) -> None:
    """The options of dub and animate before a command's own."""


def _tail(
    overwrite: OverwriteOpt = False,
    batch_size: BatchSizeOpt = GEN_BATCH,
    manifest: ManifestOpt = None,
    overlap: OverlapOpt = 1.0,
    model: ModelOpt = "avsynth-s",
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    seed: SeedOpt = 0,
    compile: CompileOpt = False,
    cuda_graphs: CudaGraphsOpt = False,
    threads: ThreadsOpt = None,
    preview: PreviewOpt = False,
    as_json: JsonOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """The options of dub and animate after a command's own (and -v, -q, --debug: `command`)."""


def _dub_options(
    mix_original: Annotated[
        float | None,
        typer.Option(
            "--mix-original",
            min=0.0,
            callback=finite,
            metavar="GAIN",
            help="Mix the video's own soundtrack in at this gain (implies --original-audio mix).",
        ),
    ] = None,
    original_audio: Annotated[
        OriginalAudio,
        typer.Option(
            "--original-audio",
            help="A video's own soundtrack: replace it, keep it as a second track, or mix it "
            "in (at its own rate and channels, gain 1 unless --mix-original).",
        ),
    ] = OriginalAudio.replace,
    sample_rate: Annotated[
        int | None,
        typer.Option(
            "--sample-rate",
            min=8000,
            max=192_000,
            help="Rate of the written sound (default: 48000 in video, the model's 16000 in "
            ".wav/.flac, the original's when mixing).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """dub's own options."""


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both even and 2 to 4096; a usage error (exit 2) otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(f"{text!r}: expected WxH, e.g. 256x256")
    w, h = int(parts[0]), int(parts[1])
    if not (2 <= w <= 4096 and 2 <= h <= 4096) or w % 2 or h % 2:
        raise typer.BadParameter(f"{text!r}: width and height must be even, from 2 to 4096")
    return w, h


def check_size(text: str | None) -> str | None:
    """--size's callback: refuse a bad WxH before any work, keep the text."""
    if text is not None:
        parse_size(text)
    return text


def _animate_options(
    size: Annotated[
        str | None,
        typer.Option(
            "--size",
            metavar="WxH",
            help="Scale the written video to this size for viewing (nearest neighbour, even "
            "numbers, e.g. 256x256). What is generated and scored stays at the model's size.",
            callback=check_size,
        ),
    ] = None,
) -> None:
    """animate's own options."""


# ------------------------------------------------------------------------------ the commands


@command(_head, _dub_options, _tail)
def dub(log: Log, **options: Any) -> None:
    """Give silent video a synchronized soundtrack (.mp4/.mov/.mkv: muxed; .wav/.flac: audio).

    Folders and globs are batched on the device and resumable: outputs that exist are skipped.
    Under torchrun each process takes its share of the inputs.
    """
    o = SimpleNamespace(**options)
    own = dict(mix_original=o.mix_original, original_audio=o.original_audio.value)
    _generate("dub", o, own | dict(sample_rate=o.sample_rate), log)


@command(_head, _animate_options, _tail)
def animate(log: Log, **options: Any) -> None:
    """Make video whose visual events land on the sound's events; the input audio is muxed in.

    Folders and globs are batched on the device and resumable: outputs that exist are skipped.
    Under torchrun each process takes its share of the inputs.
    """
    o = SimpleNamespace(**options)
    _generate("animate", o, dict(size=None if o.size is None else parse_size(o.size)), log)


def _generate(task: str, o: SimpleNamespace, own: dict[str, Any], log: Log) -> None:
    """Map a generation command's options to one batch run; exit with its code."""
    prepare_threads()
    from avlink_cli.options import GenOptions, ModelOptions, Sampling

    sampling = Sampling(
        o.prompt, o.negative_prompt, o.steps, o.cfg, o.sampler.value, o.overlap, o.batch_size
    )
    gen = GenOptions(sampling, samples=o.samples, preview=o.preview, **own)
    opts = ModelOptions(
        o.model,
        o.device.value,
        o.dtype.value,
        o.seed,
        o.offline,
        compile=o.compile,
        cuda_graphs=o.cuda_graphs,
        threads=o.threads,
    )
    code = _run_batch(
        task,
        o.inputs,
        o.output,
        gen=gen,
        opts=opts,
        overwrite=o.overwrite,
        as_json=o.as_json,
        quiet=log.quiet,
        manifest=o.manifest,
    )
    raise typer.Exit(code)
