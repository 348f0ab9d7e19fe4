"""The commands about models: `avlink bench` (time sampling), `avlink models` (the presets, or the
model folders on this machine) and `avlink download` (fetch and verify a model).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from avlink_cli.app import (
    BatchSizeOpt,
    CompileOpt,
    CudaGraphsOpt,
    Device,
    DeviceOpt,
    Dtype,
    DtypeOpt,
    JsonOpt,
    Log,
    OfflineOpt,
    Sampler,
    SamplerOpt,
    ThreadsOpt,
    command,
    finite,
    prepare_threads,
)


class Direction(str, Enum):
    v2a = "v2a"
    a2v = "a2v"


@command()
def bench(
    log: Log,
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
    offline: OfflineOpt = False,
) -> None:
    """Time sampling: ms/step, s/clip, real-time factor, FLOPs, TFLOP/s, MFU, peak memory."""
    prepare_threads()
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


# ------------------------------------------------------------------------------ models, download


@command()
def models(
    log: Log,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed",
            help="List the model folders on this machine instead: packaged and in the Hub cache.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON Lines: one object per preset or model.")
    ] = False,
) -> None:
    """List the presets: parameters per component, token counts, rates (no weights allocated)."""
    if installed:
        _installed(as_json)
        return
    from avlink_cli.catalog import describe_presets

    _print_rows("preset", describe_presets(), as_json, "avlink presets", PRESET_COLUMNS)


PRESET_COLUMNS: dict[str, Callable[[dict], str]] = {
    "preset": lambda r: r["name"],
    "clip": lambda r: f"{r['duration_s']:g} s",
    "video": lambda r: (
        f"{r['video']['size'][0]}x{r['video']['size'][1]} @ {r['video']['fps']:g} fps"
    ),
    "audio": lambda r: f"{r['audio']['sample_rate'] // 1000} kHz, {r['audio']['n_mels']} mel",
    "video DiT": lambda r: _millions(r["parameters"]["video_dit"]),
    "audio DiT": lambda r: _millions(r["parameters"]["audio_dit"]),
    "fusion": lambda r: _millions(r["parameters"]["fusion"]),
    "tokens v/a": lambda r: f"{r['video']['tokens']}/{r['audio']['tokens']}",
}
MODEL_COLUMNS: dict[str, Callable[[dict], str]] = {
    "model": lambda r: r["model"],
    "where": lambda r: r["source"],
    "revision": lambda r: (r["revision"] or "-")[:12],
    "size": lambda r: f"{r['size'] / 1e6:.1f} MB",
    "sha256 (manifest)": lambda r: (r["model_sha"] or "-")[:12],
    "path": lambda r: r["path"],
}


def _installed(as_json: bool) -> None:
    from avlink_cli.hub import installed_models

    rows = installed_models()
    title = "avlink models on this machine"
    _print_rows("model", rows, as_json, title, MODEL_COLUMNS, overflow="fold")
    if not rows and not as_json:
        typer.echo("no models installed; `avlink download avsynth-s` fetches the default", err=True)


def _print_rows(
    kind: str,
    rows: list[dict],
    as_json: bool,
    title: str,
    columns: dict[str, Callable[[dict], str]],
    **column: Any,
) -> None:
    """Rows as JSON Lines ({"type": kind, ...}), or as one rich table of these columns."""
    if as_json:
        for row in rows:
            typer.echo(json.dumps({"type": kind} | row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name in columns:
        table.add_column(name, **column)
    for r in rows:
        table.add_row(*(cell(r) for cell in columns.values()))
    Console().print(table)


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


@command()
def download(
    log: Log,
    model: Annotated[str, typer.Argument(help="Preset name or Hub id org/name\\[@revision].")],
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit.")
    ] = None,
    local_dir: Annotated[
        Path | None,
        typer.Option(
            "--local-dir",
            help="Put the model folder here (plain files) instead of the Hugging Face cache.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a model (into the Hugging Face cache, or --local-dir) and verify every sha256."""
    from avlink_cli import hub

    try:
        folder = hub.download(model, revision=revision, local_dir=local_dir)
    except hub.HubError as e:
        if as_json:  # a record on failure too, then the usual error line and exit 1
            rec = {"type": "result", "model": model, "status": "error", "error": str(e)}
            typer.echo(json.dumps(rec | {"path": None}))
        raise
    if as_json:
        rec = {"type": "result", "model": model, "status": "ok", "error": None}
        typer.echo(json.dumps(rec | {"path": str(folder)} | hub.describe_folder(folder)))
    else:
        typer.echo(str(folder))
