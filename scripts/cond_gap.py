"""Does a model's Fusion read the other modality? The flow-matching loss on AVSynth validation clips
with each clip's own conditioning ("matched") against another clip's ("shuffled"), and of the
generator alone, at a few flow times. A Fusion that uses the conditioning makes matched < shuffled.

    python scripts/cond_gap.py weights/avsynth-s [--clips 64] [--times 0.05 0.2 0.5]

Prints one JSON line per direction: loss per condition (mean over the times) and matched/shuffled.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from avlink_cli import flow
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens, wav_to_tokens
from avlink_cli.synth import render_clip


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
    g = torch.Generator().manual_seed(a.seed)
    with torch.no_grad():
        ctx = m.encode_text([""] * b)
        for direction, x1, cond in (("v2a", audio, video), ("a2v", video, audio)):
            out: dict[str, float] = {}
            for name, c in (("matched", cond), ("shuffled", cond.roll(1, 0)), ("alone", None)):
                losses = []
                for t in a.times:
                    g.manual_seed(a.seed)
                    x0 = torch.randn(x1.shape, generator=g)
                    noise = torch.randn(cond.shape, generator=g)
                    tt = torch.full((b,), t)
                    xt = flow.interpolate(x0, x1, tt)
                    if c is None:
                        v = m.uncond_velocity(direction, xt, tt, ctx)
                    else:
                        cache = m.prepare_condition(direction, c, ctx, noise=noise)
                        v = m.velocity(direction, xt, tt, cache, ctx)
                    losses.append(flow.loss(v, x0, x1).item())
                out[name] = float(np.mean(losses))
            ratio = out["matched"] / out["shuffled"]
            print(json.dumps({"model": a.model, "direction": direction, "times": a.times}
                             | {k: round(v, 5) for k, v in out.items()}
                             | {"matched_over_shuffled": round(ratio, 5)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
