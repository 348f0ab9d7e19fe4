"""The avlink command line (Typer + rich).

Layout, for whoever adds a command:
- options used by more than one command are declared once below as ``Annotated`` aliases
  (``ModelOpt``, ``DeviceOpt``, ...); a new command lists the ones it takes;
- a command body runs inside ``with cli_errors(debug):``, which turns our exceptions into one
  ``error: ...`` line on stderr and an exit code (2 usage, 1 failure), with the traceback only
  under ``--debug``;
- heavy imports (torch, the model, media) happen inside command bodies, so ``avlink --help``
  stays fast.

Exit codes: 0 all inputs succeeded, 1 some input (or the model) failed, 2 usage error.
"""

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, NoReturn

import typer

from avlink_cli.presets import GEN_BATCH

app = typer.Typer(
    name="avlink",
    help="Synchronized sound for silent video, and video for sound (AV-Link).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Dtype(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Sampler(str, Enum):
    euler = "euler"
    heun = "heun"


class OriginalAudio(str, Enum):
    replace = "replace"
    keep = "keep"
    mix = "mix"


# ------------------------------------------------------------------------------ shared options


def finite(value: float | None) -> float | None:
    """The callback of every float option: inf and nan are usage errors, before any work."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Preset name, model folder, or Hub id org/name\\[@rev]."),
]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Where to run; auto picks a GPU.")]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Compute dtype; auto: bf16 on GPU.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Same seed, same output file.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print JSON Lines on stdout: one object per input.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Debug logs and full tracebacks.")]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log what ran: model, revision, device, seeds.")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print only errors (and --json records).")
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads (default: free CPUs at start; OMP_NUM_THREADS wins).",
        show_default=False,
    ),
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Never touch the network (like HF_HUB_OFFLINE=1).")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
InputsArg = Annotated[
    list[str], typer.Argument(help="Media files, folders or glob patterns.", show_default=False)
]
OutputOpt = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        help="Output file (one input) or folder (several). Default: next to each input.",
        show_default=False,
    ),
]
PromptOpt = Annotated[str, typer.Option("--prompt", "-p", help="What it should sound/look like.")]
NegativeOpt = Annotated[str, typer.Option("--negative-prompt", help="What to steer away from.")]
StepsOpt = Annotated[
    int | None, typer.Option("--steps", min=1, help="Sampling steps (default: the model's).")
]
CfgOpt = Annotated[
    float | None,
    typer.Option("--cfg", min=0.0, callback=finite, help="Guidance scale (default: the model's)."),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", min=1, help="Outputs per input (named out.0.mp4, ...).")
]
SamplerOpt = Annotated[Sampler, typer.Option("--sampler", help="ODE solver.")]
BatchSizeOpt = Annotated[
    int, typer.Option("--batch-size", "-b", min=1, help="Clips sampled together on the device.")
]
ManifestOpt = Annotated[
    str | None,
    typer.Option(
        "--manifest",
        help="Append one JSON line per input here. Default for folders and globs: "
        "<output folder>/avlink-manifest.jsonl.",
        show_default=False,
    ),
]
OverlapOpt = Annotated[
    float,
    typer.Option(
        "--overlap",
        min=0.0,
        callback=finite,
        help="Seconds shared by the windows of a long input (less than the model's window).",
    ),
]
CompileOpt = Annotated[
    bool, typer.Option("--compile", help="torch.compile the backbone and Fusion blocks.")
]
PreviewOpt = Annotated[
    bool,
    typer.Option(
        "--preview", help="Also write a PNG beside each output (sound, onsets, motion, frames)."
    ),
]
CudaGraphsOpt = Annotated[
    bool, typer.Option("--cuda-graphs", help="Replay each sampling step as a CUDA graph.")
]


# ------------------------------------------------------------------------------ error handling


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one ``error:`` line on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def cli_errors(debug: bool) -> Iterator[None]:
    """Turn exceptions into one line and an exit code: UsageError 2, our own errors 1.

    "Our own" is any exception class defined in avlink_cli (MediaError, ModelError, HubError,
    ...): those carry a message meant for the user. Anything else is a bug: its type is shown.
    """
    from avlink_cli.batch import UsageError, one_line

    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:
        if debug:
            logging.getLogger("avlink_cli").exception("command failed")
        fail(one_line(e), 2 if isinstance(e, UsageError) else 1)


def prepare_threads() -> None:
    """Before torch loads: sleeping OpenMP waits and the first load snapshot (threads.py)."""
    from avlink_cli import threads

    threads.prepare_cli()


def setup_logging(debug: bool, *, verbose: bool = False, quiet: bool = False) -> None:
    """Only the CLI configures logging: rich on stderr; INFO with -v, DEBUG with --debug, and
    only errors with -q."""
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=debug, rich_tracebacks=True)
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=logging.ERROR if quiet and not debug else level,
        format="%(message)s",
        handlers=[handler],
        force=True,
    )


# ------------------------------------------------------------------------------ version


def _print_version(value: bool) -> None:
    if value:
        from avlink_cli import __version__

        typer.echo(f"avlink {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = None,
) -> None:
    """Synchronized sound for silent video, and video for sound (AV-Link)."""


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
    from avlink_cli.progress import RichProgress, summary

    task = batch.DUB if task_name == "dub" else batch.ANIMATE
    console = Console(stderr=True)
    live = not as_json and not quiet and sys.stderr.isatty()
    progress = RichProgress(console) if live else batch.BatchProgress()
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
        typer.echo(json.dumps(batch.summary_record(results, wall)))
    if not quiet and not as_json and (len(results) > 1 or (live and results)):
        summary(console, results, wall)
    if failed and len(results) > 1:
        names = ", ".join(failed[:10]) + (
            f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        )
        typer.echo(f"error: {len(failed)} of {len(results)} inputs failed: {names}", err=True)
    return 1 if failed else 0


@app.command()
def dub(
    inputs: InputsArg,
    output: OutputOpt = None,
    prompt: PromptOpt = "",
    negative_prompt: NegativeOpt = "",
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    samples: SamplesOpt = 1,
    sampler: SamplerOpt = Sampler.euler,
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
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Give silent video a synchronized soundtrack (.mp4/.mov/.mkv: muxed; .wav/.flac: audio).

    Folders and globs are batched on the device and resumable: outputs that exist are skipped.
    Under torchrun each process takes its share of the inputs.
    """
    setup_logging(debug, verbose=verbose, quiet=quiet)
    prepare_threads()
    with cli_errors(debug):
        from avlink_cli.batch import GenOptions, ModelOptions

        gen = GenOptions(
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            cfg=cfg,
            samples=samples,
            sampler=sampler.value,
            mix_original=mix_original,
            original_audio=original_audio.value,
            sample_rate=sample_rate,
            preview=preview,
            batch_size=batch_size,
            overlap=overlap,
        )
        opts = ModelOptions(
            model,
            device.value,
            dtype.value,
            seed,
            offline,
            compile=compile,
            cuda_graphs=cuda_graphs,
            threads=threads,
        )
        code = _run_batch(
            "dub",
            inputs,
            output,
            gen=gen,
            opts=opts,
            overwrite=overwrite,
            as_json=as_json,
            quiet=quiet,
            manifest=manifest,
        )
    raise typer.Exit(code)


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


@app.command()
def animate(
    inputs: InputsArg,
    output: OutputOpt = None,
    prompt: PromptOpt = "",
    negative_prompt: NegativeOpt = "",
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    samples: SamplesOpt = 1,
    sampler: SamplerOpt = Sampler.euler,
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
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Make video whose visual events land on the sound's events; the input audio is muxed in.

    Folders and globs are batched on the device and resumable: outputs that exist are skipped.
    Under torchrun each process takes its share of the inputs.
    """
    setup_logging(debug, verbose=verbose, quiet=quiet)
    prepare_threads()
    with cli_errors(debug):
        from avlink_cli.batch import GenOptions, ModelOptions

        gen = GenOptions(
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            cfg=cfg,
            samples=samples,
            sampler=sampler.value,
            preview=preview,
            batch_size=batch_size,
            overlap=overlap,
            size=None if size is None else parse_size(size),
        )
        opts = ModelOptions(
            model,
            device.value,
            dtype.value,
            seed,
            offline,
            compile=compile,
            cuda_graphs=cuda_graphs,
            threads=threads,
        )
        code = _run_batch(
            "animate",
            inputs,
            output,
            gen=gen,
            opts=opts,
            overwrite=overwrite,
            as_json=as_json,
            quiet=quiet,
            manifest=manifest,
        )
    raise typer.Exit(code)


class Direction(str, Enum):
    v2a = "v2a"
    a2v = "a2v"


@app.command()
def bench(
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="Random-weight model of this preset (tiny, avsynth-s, paper)."
        ),
    ] = "avsynth-s",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Instead: end-to-end dub and animate of this model (preset, folder or Hub id).",
            show_default=False,
        ),
    ] = None,
    batch_size: BatchSizeOpt = 1,
    steps: Annotated[
        int | None,
        typer.Option("--steps", min=1, help="Sampling steps (default: 25, or the model's)."),
    ] = None,
    direction: Annotated[Direction, typer.Option("--direction", help="What is generated.")] = (
        Direction.v2a
    ),
    cfg: Annotated[
        float, typer.Option("--cfg", min=0.0, callback=finite, help="Guidance scale (1: no CFG).")
    ] = 3.0,
    sampler: SamplerOpt = Sampler.euler,
    compile: CompileOpt = False,
    cuda_graphs: CudaGraphsOpt = False,
    sdpa: Annotated[
        str,
        typer.Option(
            "--sdpa",
            help="Attention kernel order to try: auto (PyTorch's), cudnn or flash first.",
        ),
    ] = "auto",
    device: DeviceOpt = Device.auto,
    dtype: DtypeOpt = Dtype.auto,
    threads: ThreadsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    offline: OfflineOpt = False,
) -> None:
    """Time sampling: ms/step, s/clip, real-time factor, FLOPs, TFLOP/s, MFU, peak memory."""
    setup_logging(debug, verbose=verbose, quiet=quiet)
    prepare_threads()
    with cli_errors(debug):
        from avlink_cli import threads as threads_mod

        threads_mod.configure(threads)
        from rich.console import Console
        from rich.table import Table

        from avlink_cli import bench as bench_mod

        if model is not None:
            from avlink_cli.pipeline import Engine

            engine = Engine.from_folder(
                model,
                device=device.value,
                dtype=dtype.value,
                offline=offline or None,
                compile=compile,
                cuda_graphs=cuda_graphs,
            )
            report = bench_mod.bench_model(engine, batch_size=batch_size, steps=steps)
        else:
            report = bench_mod.bench_sampling(
                preset,
                device=device.value,
                dtype=dtype.value,
                batch_size=batch_size,
                steps=steps or 25,
                direction=direction.value,
                cfg=cfg,
                sampler=sampler.value,
                compile=compile,
                cuda_graphs=cuda_graphs,
                sdpa=sdpa,
            )
        if as_json:
            typer.echo(json.dumps({"type": "bench"} | report))
            return
        table = Table(title=f"avlink bench ({report['device']}, {report['dtype']})")
        table.add_column("")
        table.add_column("", justify="right")

        def fmt(v: object) -> str:
            if isinstance(v, float):
                return f"{v:.4g}"
            if isinstance(v, dict):
                return ", ".join(f"{k} {fmt(x)}" for k, x in v.items())
            return "n/a" if v is None else str(v)

        for row in report.pop("results", []):
            name = f"{row['task']} x{row['batch_size']}"
            table.add_row(f"{name}: s/clip", fmt(row["seconds_per_clip"]))
            table.add_row(f"{name}: real-time factor", fmt(row["realtime_factor"]))
        for key, value in report.items():
            table.add_row(key.replace("_", " "), fmt(value))
        Console().print(table)


def main() -> None:
    """Console-script entry point (``avlink``) and ``python -m avlink_cli``.

    Under torchrun each worker ends through `exit_worker` (gloo can abort a worker during the
    interpreter's teardown after all its work is done; see there)."""
    from avlink_cli import shutdown

    shutdown.install()  # SIGTERM unwinds like Ctrl-C and exits 143
    # training.loop.under_torchrun, inline: importing that module imports torch, which a
    # plain `avlink --help` should not wait for
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        try:
            app(prog_name="avlink")
        finally:
            shutdown.check()  # a SIGTERM whose exception Python dropped still exits 143
        return
    try:
        app(prog_name="avlink")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    code = shutdown.EXIT_CODE if shutdown.requested() else code
    from avlink_cli.training.loop import exit_worker

    exit_worker(code)


# The other commands (models, download, synth, train, eval) register themselves on `app`.
from avlink_cli import commands as _commands  # noqa: E402, F401
