"""The avlink Typer app, the options its commands share, and its error handling.

Layout, for whoever adds a command (`commands.py`, `model_commands.py`, `train_commands.py`; the
entry point `cli.py` imports them so that they register on `app`):
- a command is registered with ``@command()`` (below); its function takes ``log: Log`` first
  (-v, -q and --debug, which every command takes, declared once);
- options used by more than one command are declared once below as ``Annotated`` aliases
  (``ModelOpt``, ``DeviceOpt``, ...); a new command lists the ones it takes;
- a command body runs inside ``cli_errors``, which turns our exceptions into one ``error: ...``
  line on stderr and an exit code (2 usage, 1 failure), with the traceback only under
  ``--debug``;
- heavy imports (torch, the model, media) happen inside command bodies, so ``avlink --help``
  stays fast.

Exit codes: 0 all inputs succeeded, 1 some input (or the model) failed, 2 usage error.
"""

import contextlib
import inspect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, NoReturn, get_type_hints

import typer

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
        from avlink_cli.version import __version__

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


class CommandError(Exception):
    """A command's arguments or inputs are unusable; one line for the user."""


def console():
    """Rich output on stderr (stdout is for results and --json records)."""
    from rich.console import Console

    return Console(stderr=True)


# ------------------------------------------------------------------------------ registering commands


@dataclass(frozen=True)
class Log:
    """-v, -q and --debug, which every command takes (`command` declares them once)."""

    verbose: bool = False
    quiet: bool = False
    debug: bool = False


def _log_options(
    verbose: VerboseOpt = False, quiet: QuietOpt = False, debug: DebugOpt = False
) -> None:
    """The options behind `Log`."""


def signature(*parts: Callable[..., None]) -> list[inspect.Parameter]:
    """The parameters of functions that declare options, in order, their annotations resolved
    (the modules declaring them defer annotations; Typer reads the objects)."""
    return [
        p.replace(annotation=get_type_hints(fn, include_extras=True)[p.name])
        for fn in parts
        for p in inspect.signature(fn).parameters.values()
    ]


def command(*parts: Callable[..., None], name: str | None = None) -> Callable:
    """Register a command on `app`. Its function takes `log: Log` first, then its options, or,
    given `parts`, `**options` declared by those functions in order. The command line also takes
    -v, -q and --debug (--help lists them after --json), and the body runs with logging set up
    (`setup_logging`) and inside `cli_errors`."""

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        own = signature(*parts) if parts else signature(fn)[1:]
        at = next(i for i, p in enumerate(own) if p.name == "as_json") + 1

        def run(**options: Any) -> None:
            log = Log(options.pop("verbose"), options.pop("quiet"), options.pop("debug"))
            setup_logging(log.debug, verbose=log.verbose, quiet=log.quiet)
            with cli_errors(log.debug):
                fn(log, **options)

        run.__name__, run.__doc__ = fn.__name__, fn.__doc__
        run.__signature__ = inspect.Signature(own[:at] + signature(_log_options) + own[at:])  # type: ignore[attr-defined]
        app.command(name)(run)
        return fn

    return register
