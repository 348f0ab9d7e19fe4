"""Can the Fusion stage learn A2V timing on AVSynth, and does weighting the video loss by motion help?

Trains a Fusion (fresh, or the model's own with --init shipped) for A2V only, batch 16, t_shift
as FusionStage, on the frozen backbones of MODEL; every 100 steps prints the validation loss
ratio with each clip's own audio ("matched") against another clip's ("shuffled"), as
experiments/cond_gap.py does (48 clips, t 0.05/0.2/0.5): `ratio` on the plain loss, `ratio_w` on
the loss weighted by motion (alpha 8). --alpha A trains on the video loss weighted per token by
1 + A x its pixels' change to the neighbouring frames over the clip's mean (0: plain loss).

    python experiments/a2v_cue.py weights/avsynth-s --alpha 0
    python experiments/a2v_cue.py weights/avsynth-s --alpha 8
"""

import argparse
import json
import time

import numpy as np
import torch
from cond_gap import gap_losses  # experiments/, beside this file

from avlink_cli import flow
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens, wav_to_tokens
from avlink_cli.fusion import Fusion
from avlink_cli.fusion_motion import frame_differences
from avlink_cli.synth import render_clip
from avlink_cli.training.stages import weighted_flow_loss


def motion_weight(x1, per_frame, alpha):
    """1 + alpha x each token's mean |change| to the previous frame plus to the next, over the
    clip's mean, (B, N)."""
    b, n, c = x1.shape
    m = frame_differences(x1, per_frame).abs().reshape(b, n, 2, c).mean(-1).sum(-1)
    return 1 + alpha * m / m.mean(1, keepdim=True).clamp(min=1e-6)


ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--alpha", type=float, default=0.0)
ap.add_argument("--steps", type=int, default=300)
ap.add_argument("--clips", type=int, default=1024)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--t-shift", type=float, default=4.0)
ap.add_argument("--init", choices=["fresh", "shipped"], default="fresh")
a = ap.parse_args()
torch.set_num_threads(1)
m = load_model(a.model).model
p = m.preset
if a.init == "fresh":
    torch.manual_seed(0)
    m.fusion = Fusion.for_preset(p)
params = m.set_trainable("fusion")
per = p.video.tokens_per_frame_group


def data(split, n):
    clips = [render_clip(p, seed=i, split=split) for i in range(n)]
    wav = torch.from_numpy(np.stack([c.audio for c in clips]))
    audio = wav_to_tokens(wav, p.audio)[:, : p.n_audio_tokens]
    video = video_to_tokens(torch.from_numpy(np.stack([c.frames for c in clips])), p.video)
    return audio, video


t0 = time.time()
audio, video = data("train", a.clips)
va, vv = data("val", 48)
print("data", round(time.time() - t0), flush=True)
vctx = m.encode_text([""] * 48)
vw = motion_weight(vv, per, 8.0)


def gap():
    def weighted(v, x0, x1):
        return weighted_flow_loss(v, x0, x1, vw)

    with torch.no_grad():
        gaps = gap_losses(m, "a2v", vv, va, vctx, losses={"flow": flow.loss, "w": weighted})
    out = {name: (v["flow"], v["w"]) for name, v in gaps.items()}
    return {
        "ratio": round(out["matched"][0] / out["shuffled"][0], 5),
        "ratio_w": round(out["matched"][1] / out["shuffled"][1], 5),
    }


opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
g = torch.Generator().manual_seed(0)
B = 16
ctx = m.encode_text([""] * B)
print(json.dumps({"step": 0} | gap()), flush=True)
start = time.time()
for step in range(1, a.steps + 1):
    idx = torch.randint(len(audio), (B,), generator=g)
    x1, cond = video[idx], audio[idx]
    t = flow.shift_time(torch.sigmoid(torch.randn(B, generator=g)), a.t_shift)
    x0 = torch.randn(x1.shape, generator=g)
    cn = torch.randn(cond.shape, generator=g)
    cache = m.prepare_condition("a2v", cond, ctx, noise=cn)
    v = m.velocity("a2v", flow.interpolate(x0, x1, t), t, cache, ctx)
    loss = weighted_flow_loss(v, x0, x1, motion_weight(x1, per, a.alpha))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 100 == 0:
        print(json.dumps({"step": step, "s": round(time.time() - start)} | gap()), flush=True)
