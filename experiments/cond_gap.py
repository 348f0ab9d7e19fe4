"""Does a model's Fusion read the other modality? The flow-matching loss on AVSynth validation clips
with each clip's own conditioning ("matched") against another clip's ("shuffled"), and of the
generator alone, at a few flow times. A Fusion that uses the conditioning makes matched < shuffled.

    python experiments/cond_gap.py weights/avsynth-s [--clips 64] [--times 0.05 0.2 0.5]

Prints one JSON line per direction: loss per condition (mean over the times) and matched/shuffled.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch

from avlink_cli import flow
from avlink_cli.avlink import AVLink
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens, wav_to_tokens
from avlink_cli.synth import render_clip

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (v, x0, x1)


def gap_losses(
    m: AVLink,
    direction: str,
    x1: torch.Tensor,
    cond: torch.Tensor,
    ctx,
    *,
    times: tuple[float, ...] | list[float] = (0.05, 0.2, 0.5),
    seed: int = 1,
    losses: dict[str, LossFn] | None = None,
    alone: bool = False,
) -> dict[str, dict[str, float]]:
    """Mean losses over `times` of the generated side x1 given each clip's own conditioning
    ("matched"), the next clip's ("shuffled") and, with `alone`, none (the generator alone):
    {condition: {loss name: value}}. The same noise (from `seed`) for every condition and time.
    losses: named (v, x0, x1) -> loss; default {"flow": flow.loss}. Run under torch.no_grad()."""
    losses = losses or {"flow": flow.loss}
    g = torch.Generator()
    b = len(x1)
    conds = {"matched": cond, "shuffled": cond.roll(1, 0)} | ({"alone": None} if alone else {})
    out: dict[str, dict[str, float]] = {}
    for name, c in conds.items():
        per = {k: [] for k in losses}
        for t in times:
            g.manual_seed(seed)
            x0 = torch.randn(x1.shape, generator=g)
            noise = torch.randn(cond.shape, generator=g)
            tt = torch.full((b,), t)
            xt = flow.interpolate(x0, x1, tt)
            if c is None:
                v = m.uncond_velocity(direction, xt, tt, ctx)
            else:
                v = m.velocity(
                    direction, xt, tt, m.prepare_condition(direction, c, ctx, noise=noise), ctx
                )
            for k, fn in losses.items():
                per[k].append(fn(v, x0, x1).item())
        out[name] = {k: float(np.mean(vals)) for k, vals in per.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--times", type=float, nargs="+", default=[0.05, 0.2, 0.5])
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    m = load_model(a.model).model.eval()
    p = m.preset
    clips = [render_clip(p, seed=i, split="val") for i in range(a.clips)]
    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    wav = torch.from_numpy(np.stack([c.audio for c in clips]))
    audio = wav_to_tokens(wav, p.audio)[:, : p.n_audio_tokens]
    video = video_to_tokens(frames, p.video)
    b = len(clips)
    with torch.no_grad():
        ctx = m.encode_text([""] * b)
        for direction, x1, cond in (("v2a", audio, video), ("a2v", video, audio)):
            gaps = gap_losses(m, direction, x1, cond, ctx, times=a.times, seed=a.seed, alone=True)
            out = {name: v["flow"] for name, v in gaps.items()}
            ratio = out["matched"] / out["shuffled"]
            print(json.dumps({"model": a.model, "direction": direction, "times": a.times}
                             | {k: round(v, 5) for k, v in out.items()}
                             | {"matched_over_shuffled": round(ratio, 5)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
