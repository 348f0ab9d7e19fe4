"""Train the default model (avsynth-s) within a wall-clock budget, on whatever device is here.

    python scripts/train_default.py --out weights/avsynth-s --budget-minutes 8 --device cuda

It renders the AVSynth caches, times a few steps of each stage, splits the budget between the
stages, and runs `avlink train` stage by stage with explicit step counts. It prints the exact
per-stage commands it ran, so a run can be repeated step for step without the calibration.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARE = {"vocoder": 0.12, "audio": 0.22, "video": 0.26, "fusion": 0.40}
BATCH = {
    "cuda": {"vocoder": 32, "audio": 128, "video": 128, "fusion": 64},
    "cpu": {"vocoder": 8, "audio": 16, "video": 16, "fusion": 8},
}
LR = {"vocoder": 2e-3, "audio": 6e-4, "video": 6e-4, "fusion": 4e-4}


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
    ap.add_argument("--clips", type=int, default=8000)
    ap.add_argument("--val-clips", type=int, default=128)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--cache", type=Path, default=Path(".avlink-cache"))
    ap.add_argument("--calib-steps", type=int, default=60)
    a = ap.parse_args()
    kind = "cuda" if a.device.startswith("cuda") else "cpu"
    common = ["--preset", a.preset, "--clips", str(a.clips), "--val-clips", str(a.val_clips),
              "--cache", str(a.cache), "--workers", str(a.workers), "--device", a.device]  # fmt: skip
    t0 = time.time()
    scratch = a.out.with_name(a.out.name + ".calibration")
    rates = {}
    for stage in SHARE:  # the first call also renders and caches the data
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
    budget = 60 * a.budget_minutes
    plan = {st: max(50, int(SHARE[st] * budget / rates[st])) for st in SHARE}
    print("plan (steps):", json.dumps(plan), flush=True)
    summaries = []
    for stage, steps in plan.items():
        # a safety net only: stop (saved) at 1.5x the planned time if the calibration was off
        limit = f"{1.5 * steps * rates[stage] / 60:.2f}"
        args = ["train", stage, "--out", str(a.out), "--steps", str(steps), "--time-limit", limit,
                "--batch-size", str(BATCH[kind][stage]), "--lr", str(LR[stage]), *common]  # fmt: skip
        summaries += avlink(args)
        print(json.dumps(summaries[-1]), flush=True)
    print(f"total {time.time() - t0:.0f} s", flush=True)
    (a.out / "TRAINING.json").write_text(
        json.dumps(
            {
                "plan": plan,
                "ms_per_step": {k: 1000 * v for k, v in rates.items()},
                "stages": summaries,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
