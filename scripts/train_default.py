"""Train the default model (avsynth-s) from nothing within a wall-clock budget, in one command.

    python scripts/train_default.py --out M --budget-minutes 115 --device cpu   # this 2-core CPU
    python scripts/train_default.py --out M --budget-minutes 8 --device cuda    # one GPU

It renders the AVSynth caches, times a few steps of each stage, splits what is left of the
budget between the stages (shares per device: on a CPU the Fusion gets half, the video backbone,
which V2A reads only through the Fusion, the least), and runs `avlink train` stage by stage with
explicit step counts and the Fusion recipe of the shipped model (motion context from the start,
no contact hint, onset-weighted V2A loss). Each stage also stops, saved, at its share of the
time, so the whole run ends within the budget. It prints the exact per-stage commands it ran,
so a run can be repeated step for step without the calibration.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARE = {
    "cuda": {"vocoder": 0.12, "audio": 0.22, "video": 0.26, "fusion": 0.40},
    "cpu": {"vocoder": 0.11, "audio": 0.27, "video": 0.13, "fusion": 0.49},
}
BATCH = {
    "cuda": {"vocoder": 32, "audio": 128, "video": 128, "fusion": 64},
    "cpu": {"vocoder": 16, "audio": 32, "video": 32, "fusion": 16},
}
LR = {"vocoder": 2e-3, "audio": 6e-4, "video": 6e-4, "fusion": 1e-3}
# the shipped Fusion's recipe (README: one command, twice as long, matches the shipped Fusion)
STAGE_FLAGS = {"fusion": ["--contact-hint", "0", "--onset-weight", "3"]}
CLIPS = {"cuda": (8000, 128), "cpu": (2000, 64)}  # training and validation clips
# sampling defaults written into the folder, as the shipped model's (README: chosen on validation)
SAMPLING = {"cfg": {"v2a": 4.0, "a2v": 8.0}, "steps": {"v2a": 16, "a2v": 25}}


def avlink(args: list[str]) -> list[dict]:
    cmd = [sys.executable, "-m", "avlink_cli", *args, "--json"]
    print("+ avlink " + " ".join(args), flush=True)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="avsynth-s")
    ap.add_argument(
        "--budget-minutes", type=float, required=True, help="for the four stages together"
    )
    ap.add_argument("--device", default="cuda")
    ap.add_argument(
        "--clips", type=int, help="training clips (default: 8000 on a GPU, 2000 on a CPU)"
    )
    ap.add_argument("--val-clips", type=int, help="validation clips (default: 128 / 64)")
    ap.add_argument(
        "--workers", type=int, help="render processes (default: 14 on a GPU, 2 on a CPU)"
    )
    ap.add_argument("--cache", type=Path, default=Path(".avlink-cache"))
    ap.add_argument("--calib-steps", type=int, help="steps timed per stage (default: 60 / 12)")
    a = ap.parse_args()
    kind = "cuda" if a.device.startswith("cuda") else "cpu"
    a.clips = a.clips or CLIPS[kind][0]
    a.val_clips = a.val_clips or CLIPS[kind][1]
    a.workers = a.workers or (14 if kind == "cuda" else 2)
    a.calib_steps = a.calib_steps or (60 if kind == "cuda" else 12)
    share = SHARE[kind]
    common = ["--preset", a.preset, "--clips", str(a.clips), "--val-clips", str(a.val_clips),
              "--cache", str(a.cache), "--workers", str(a.workers), "--device", a.device]  # fmt: skip
    t0 = time.time()
    scratch = a.out.with_name(a.out.name + ".calibration")
    rates = {}
    for stage in share:  # the first call also renders and caches the data
        shutil.rmtree(scratch, ignore_errors=True)
        n = a.calib_steps
        avlink(["train", stage, "--out", str(scratch), "--steps", str(n),
                    "--batch-size", str(BATCH[kind][stage]), *common])[0]  # fmt: skip
        # the last logged rate: the first steps (CUDA warm-up, allocator) are not representative
        last = (scratch / ".train" / stage / "train.log").read_text().splitlines()[-1]
        rates[stage] = BATCH[kind][stage] / json.loads(last)["samples_per_s"]
        print(
            f"calibration {stage}: {1000 * rates[stage]:.1f} ms/step ({time.time() - t0:.0f} s so far)",
            flush=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    # what is left, less a reserve a stage for starting Python and loading and saving the model
    reserve = min(20.0, 3.0 * a.budget_minutes)  # seconds; about 20 for avsynth-s
    left = 60 * a.budget_minutes - (time.time() - t0) - reserve * len(share)
    if left <= 0:
        sys.exit("the budget was spent on rendering and calibration; give more minutes")
    plan = {st: max(50, int(share[st] * left / rates[st])) for st in share}
    print("plan (steps):", json.dumps(plan), flush=True)
    summaries = []
    for stage, steps in plan.items():
        # each stage stops (saved) at its share of the time, whatever the calibration said
        limit = f"{share[stage] * left / 60:.2f}"
        args = ["train", stage, "--out", str(a.out), "--steps", str(steps), "--time-limit", limit,
                "--batch-size", str(BATCH[kind][stage]), "--lr", str(LR[stage]),
                *STAGE_FLAGS.get(stage, []), *common]  # fmt: skip
        summaries += avlink(args)
        print(json.dumps(summaries[-1]), flush=True)
    record = {
        "command": " ".join(sys.argv),
        "plan": plan,
        "ms_per_step": {k: round(1000 * v, 1) for k, v in rates.items()},
        "stages": summaries,
        "seconds": round(time.time() - t0),
    }
    set_meta(a.out, SAMPLING | {"train_default": record})
    print(f"total {time.time() - t0:.0f} s", flush=True)
    (a.out / "TRAINING.json").write_text(json.dumps(record, indent=2))


def set_meta(folder: Path, meta: dict) -> None:
    """Merge `meta` into the folder's model.json (components kept, manifest rewritten)."""
    import torch

    from avlink_cli.checkpoint import load_model, save_model

    loaded = load_model(folder, device=torch.device("cpu"))
    save_model(folder, loaded.model, components=[], meta=meta)


if __name__ == "__main__":
    main()
