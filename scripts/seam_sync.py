"""Seam sync: does a long dub stay in sync across the seams between windows?

Renders long AVSynth test clips (ground-truth contact times in their sidecars), dubs them with a
model through the same path as `avlink dub` (windows of the model's clip length, overlap
inpainting, equal-power crossfades), then scores each output against its sidecar with
`evaluate.score_clip` and splits the events by where they fall: within `--near` seconds of a
seam (the middle of an overlap, where the crossfade is half way) or inside a window. Sync that
holds across seams shows the same timing errors, misses and BT.1359 share in both groups.

It needs a trained model: an untrained one makes noise whose onsets match nothing.

    python scripts/seam_sync.py --model avsynth-s --clips 4 --duration 60 --out /tmp/seams
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avlink_cli import batch, evaluate, metrics
from avlink_cli.hub import resolve_model
from avlink_cli.options import GenOptions, ModelOptions, Sampling
from avlink_cli.outputs import DUB
from avlink_cli.presets import Preset
from avlink_cli.synth import ClipSpec, render_clip
from avlink_cli.synth.dataset import write_clip
from avlink_cli.windows import WindowPlan


def seam_times(plan: WindowPlan) -> np.ndarray:
    """The middle of each overlap: where window k + 1 takes over from window k."""
    ends = [float(s + plan.window) for s in plan.starts[:-1]]
    return np.array([(float(s) + e) / 2 for s, e in zip(plan.starts[1:], ends, strict=True)])


def group_stats(errors_ms: list[float | None]) -> dict[str, float]:
    err = np.array([np.nan if e is None else e / 1000 for e in errors_ms], dtype=np.float64)
    s = metrics.timing_stats(err)
    return {
        "events": s.n_events,
        "missed": s.n_missed,
        "median_abs_ms": 1000 * s.median_abs,
        "p90_abs_ms": 1000 * s.p90_abs,
        "bias_ms": 1000 * s.bias,
        "bt1359_share": s.bt1359_share,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="avsynth-s")
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--overlap", type=float, default=1.0)
    ap.add_argument("--near", type=float, default=0.5, help="seconds from a seam that count")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("seam-sync"))
    args = ap.parse_args()

    from avlink_cli.checkpoint import read_model_json

    preset = Preset.from_dict(read_model_json(resolve_model(args.model))["preset"])
    spec = ClipSpec(args.duration, preset.video.fps, preset.video.height, preset.video.width)
    inputs, outputs = args.out / "inputs", args.out / "dubbed"
    inputs.mkdir(parents=True, exist_ok=True)
    for seed in range(args.clips):
        path = inputs / f"long-{seed:03d}.mp4"
        if not path.exists():
            write_clip(render_clip(spec, seed, "test"), path)
    gen = GenOptions(Sampling(steps=args.steps, overlap=args.overlap))
    opts = ModelOptions(args.model, device=args.device)
    for res in batch.run(DUB, [str(inputs)], str(outputs), gen=gen, opts=opts):
        print(json.dumps(res.record()), flush=True)

    plan = WindowPlan.make(preset, args.duration, overlap=args.overlap)
    seams = seam_times(plan)
    near, inside = [], []
    for path in sorted(inputs.glob("*.mp4")):
        events = evaluate.load_events(path.with_suffix(".json"))
        rec = evaluate.score_clip(outputs / f"{path.stem}.dubbed.mp4", events=events, mode="v2a")
        times = np.asarray(rec.get("event_times", []))
        for t, e in zip(times, rec.get("timing_errors_ms", []), strict=True):
            close = len(seams) and np.abs(seams - t).min() <= args.near
            (near if close else inside).append(e)
    report = {
        "model": args.model,
        "preset": preset.name,
        "window_s": float(plan.window),
        "overlap_s": args.overlap,
        "seams_per_clip": len(seams),
        "near_seam": group_stats(near),
        "inside_window": group_stats(inside),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
