"""How readable are AVSynth's contacts in a video representation? A small supervised probe.

A two-layer transformer (width 128, learned space-time positions) is trained to mark the frame
nearest each true contact from one representation of the frames, on 2000 training clips, and
scored by ROC AUC over the frames of 300 validation clips (every 150 of 600 steps, batch 32).

    python experiments/contact_probe.py pixels          # 16x16 pixel patches (the video tokens)
    python experiments/contact_probe.py pixels+diff     # ... with their change from the previous
                                                    # frame and to the next (the motion features)
    python experiments/contact_probe.py embed[+diff]    # the video DiT's patch embedding of them
    python experiments/contact_probe.py fusion0[+diff]  # the stream the first Fusion Block reads

It measures what a representation makes easy to learn with labels; the Fusion Blocks must find
the same thing from the flow-matching loss alone (experiments/cue_test.py).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens
from avlink_cli.fusion_motion import frame_differences
from avlink_cli.synth import render_clip
from avlink_cli.training.run import contact_frames

REPRESENTATIONS = ["pixels", "embed", "fusion0"]


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (no ties in continuous scores)."""
    rank = np.empty(len(score))
    rank[score.argsort()] = np.arange(len(score))
    pos = label.sum()
    return float((rank[label == 1].sum() - pos * (pos - 1) / 2) / (pos * (len(label) - pos)))


class Probe(nn.Module):
    def __init__(self, dim: int, frames: int, per_frame: int, width: int = 128) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.randn(1, frames, per_frame, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, 4, 2 * width, 0.0, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, S, dim) -> a contact logit per frame (B, T)."""
        b, t, s, _ = x.shape
        h = self.enc((self.inp(x) + self.pos).reshape(b, t * s, -1)).reshape(b, t, s, -1)
        return self.out(h.mean(2))[..., 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = REPRESENTATIONS + [r + "+diff" for r in REPRESENTATIONS]
    ap.add_argument("representation", choices=choices)
    ap.add_argument("--model", default="weights/avsynth-s")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model).model.eval()
    p = m.preset
    per_frame = p.video.tokens_per_frame_group
    base, diff = a.representation.removesuffix("+diff"), a.representation.endswith("+diff")

    def data(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        clips = [render_clip(p, seed=i, split=split) for i in range(n)]
        label = torch.from_numpy(contact_frames([c.sidecar["events"] for c in clips], p)).float()
        tokens = video_to_tokens(torch.from_numpy(np.stack([c.frames for c in clips])), p.video)
        noise = torch.Generator().manual_seed(0)
        feats = []
        with torch.no_grad():
            for x in tokens.split(100):
                if base == "embed":
                    x = m.video_dit.embed.proj(x)
                elif base == "fusion0":  # as V2A sampling computes it: noised to t_cond
                    ctx = m.encode_text([""] * len(x))
                    x = m.prepare_condition(
                        "v2a", x, ctx, noise=torch.randn(x.shape, generator=noise)
                    ).states[0]
                if diff:
                    x = torch.cat([x, frame_differences(x, per_frame)], -1)
                feats.append(x.reshape(len(x), p.n_frames, per_frame, -1))
        return torch.cat(feats), label

    x_train, y_train = data("train", 2000)
    x_val, y_val = data("val", 300)
    torch.manual_seed(0)
    probe = Probe(x_train.shape[-1], p.n_frames, per_frame)
    opt = torch.optim.AdamW(probe.parameters(), 1e-3)
    pos_weight = (1 - y_train.mean()) / y_train.mean()
    start = time.time()
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(x_train), (32,))
        loss = nn.functional.binary_cross_entropy_with_logits(
            probe(x_train[idx]), y_train[idx], pos_weight=pos_weight
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 150 == 0:
            with torch.no_grad():
                score = torch.cat([probe(x) for x in x_val.split(100)])
            print(json.dumps({"representation": a.representation, "step": step,
                              "seconds": round(time.time() - start),
                              "auc": round(auc(score.flatten().numpy(), y_val.flatten().numpy()), 4)}),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
