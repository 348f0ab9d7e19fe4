"""What `avlink train` runs: per-preset defaults for each stage, progress, and a log file.

Defaults (steps, batch, learning rate) live here, per preset and stage; flags override them.
The log is `<out>/.train/<stage>/train.log`, one JSON object per report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from avlink_cli.avlink import Ablation
from avlink_cli.presets import get_preset
from avlink_cli.training.loop import LoopConfig, StepReport, finish_distributed, rank
from avlink_cli.training.run import STAGES, DataSpec, train_stage

# (steps, global batch, peak lr) per preset and stage
DEFAULTS: dict[str, dict[str, tuple[int, int, float]]] = {
    "tiny": {s: (30, 8, 1e-3) for s in STAGES},
    "avsynth-s": {
        "vocoder": (7000, 16, 2e-3),
        "audio": (3000, 32, 5e-4),
        "video": (3000, 32, 5e-4),
        "fusion": (3000, 32, 3e-4),
    },
    "paper": {s: (50_000, 64, 1e-4) for s in STAGES},
}


def run_training(
    stage: str,
    *,
    out: Path,
    preset_name: str,
    data: str,
    clips: int,
    val_clips: int,
    steps: int | None,
    batch_size: int | None,
    lr: float | None,
    ablation: dict[str, bool],
    cache: Path,
    workers: int,
    device: torch.device,
    seed: int,
    time_limit: float | None = None,
    contact_hint: float = 0.0,
    contact_loss: float | None = None,
    onset_weight: float = 0.0,
    silent_weight: float = 0.0,
    quiet: bool = False,
    console=None,
) -> list[dict]:
    """Train `stage` (or every stage in order for "all"); returns one summary per stage."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    preset = get_preset(preset_name)
    if data != "avsynth" and not Path(data).is_dir():
        raise FileNotFoundError(f"--data {data}: neither 'avsynth' nor a folder")
    spec = DataSpec(data, train_count=clips, val_count=val_clips, seed=seed)
    stages = STAGES if stage == "all" else (stage,)
    summaries = []
    show = not quiet and rank() == 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def data_progress(what: str, i: int, n: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=n, info="")
            bar.update(tasks[what], completed=i)

        for name in stages:
            d_steps, d_batch, d_lr = DEFAULTS.get(preset.name, DEFAULTS["avsynth-s"])[name]
            cfg = LoopConfig(
                steps=steps or d_steps,
                batch_size=batch_size or d_batch,
                lr=lr or d_lr,
                warmup=min(200, max(1, (steps or d_steps) // 20)),
                ckpt_every=max(1, min(250, (steps or d_steps) // 10)),
                val_every=max(1, (steps or d_steps) // 5),
                log_every=max(1, min(25, (steps or d_steps) // 50)),
                seed=seed,
                time_limit=time_limit,
            )
            log_path = Path(out) / ".train" / name / "train.log"
            task = bar.add_task(f"train {name}", total=cfg.steps, info="")

            def on_step(r: StepReport, task: int = task, log_path: Path = log_path) -> None:
                info = f"loss {r.loss:.4f}  {r.samples_per_s:.1f} samples/s"
                if r.val_loss is not None:
                    info += f"  val {r.val_loss:.4f}"
                bar.update(task, completed=r.step, info=info)
                if rank() == 0:
                    log_path.parent.mkdir(parents=True, exist_ok=True)
                    with open(log_path, "a") as f:
                        f.write(json.dumps({"time": time.time(), **r.__dict__}) + "\n")

            summary = train_stage(
                name,
                preset=preset,
                out=Path(out),
                data=spec,
                cache_dir=Path(cache),
                loop=cfg,
                device=device,
                ablation=Ablation(**ablation),
                contact_hint=contact_hint,
                contact_loss=contact_loss,
                onset_weight=onset_weight,
                silent_weight=silent_weight,
                workers=workers,
                on_step=on_step,
                progress=data_progress,
            )
            summaries.append(summary)
    finish_distributed()
    return summaries
