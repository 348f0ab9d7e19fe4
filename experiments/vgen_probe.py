"""The video generator alone: sample clips, score them against true renders, draw a contact sheet.

usage: python experiments/vgen_probe.py FOLDER [--ckpt] [--n 16] [--steps 25] [--shift S ...]
       [--from-t T] [--sheet out.png] [--json]

FOLDER is a model folder; --ckpt reads the video DiT's EMA weights from the folder's running
training checkpoint (FOLDER/.train/video) instead of video_dit.safetensors. Each --shift (default:
the DiT's own sampling shift) samples the same noise on another time grid. --from-t T noises the true
clips to T and samples from there (a check that the sampling path matches the training path).
Rows of the sheet: samples of each shift, then the true clips; columns: frames 0, 6, ..., 42.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from avlink_cli import flow, realism
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import tokens_to_video, video_to_tokens
from avlink_cli.plots import encode_png
from avlink_cli.synth import render_clip


def ema_video_dit(folder: Path) -> dict[str, torch.Tensor]:
    root = folder / ".train" / "video"
    latest = json.loads((root / "latest.json").read_text())
    tensors = load_file(root / latest["path"] / "state.safetensors")
    prefix = "ema.model.video_dit."
    print(f"checkpoint step {latest['step']}")
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def sheet(rows: list[np.ndarray], cols: range, scale: int = 4) -> np.ndarray:
    """rows of clips (T, H, W, 3) -> one image, frames `cols` across, a 2-px gap between."""
    tiles = []
    for clip in rows:
        frames = [np.kron(clip[k], np.ones((scale, scale, 1), np.uint8)) for k in cols]
        gap = np.full((frames[0].shape[0], 2, 3), 30, np.uint8)
        line = np.concatenate([x for f in frames for x in (f, gap)], 1)
        tiles += [line, np.full((2, line.shape[1], 3), 30, np.uint8)]
    return np.concatenate(tiles, 0)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--ckpt", action="store_true")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--shift", type=float, action="append")
    ap.add_argument("--from-t", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--test-seed", type=int, default=0)
    ap.add_argument("--sheet", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    model = load_model(args.folder).model.eval()
    dit, preset = model.video_dit, model.preset
    if args.ckpt:
        dit.load_state_dict(ema_video_dit(args.folder))
    true = [
        render_clip(preset, seed=args.test_seed + i, split="test").frames for i in range(args.n)
    ]
    x1 = video_to_tokens(torch.from_numpy(np.stack(true)), preset.video)
    ctx = model.null_context(args.n)
    g = torch.Generator().manual_seed(args.seed)
    x0 = torch.randn(x1.shape, generator=g)
    rows: list[np.ndarray] = []
    reports = {}
    for shift in args.shift or [dit.cfg.sampling_shift]:
        if args.from_t is None:
            x = flow.sample(lambda x, t: dit(x, t, ctx), x0, steps=args.steps, shift=shift)
        else:  # integrate from the true clips noised to from_t, on the tail of the same grid
            ts = flow.time_grid(args.steps, shift=shift)
            ts = torch.cat([torch.tensor([args.from_t]), ts[ts > args.from_t]])
            x = flow.interpolate(x0, x1, torch.full((args.n,), args.from_t))
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                x = x + (t_next - t) * dit(x, t.expand(args.n), ctx)
        gen = list(tokens_to_video(x, preset).numpy())
        rep = realism.compare(gen, true)
        rep["token_std"] = round(float(x.std()), 3)
        reports[f"shift {shift:g}"] = rep
        rows += gen[:4]
        print(f"shift {shift:g}: " + json.dumps(rep))
    print(f"true token std {float(x1.std()):.3f}; fd floor {realism.fd_floor(true)}")
    if args.sheet:
        img = sheet(rows + true[:4], range(0, preset.n_frames, 6))
        args.sheet.write_bytes(encode_png(img))
    if args.json:
        print(json.dumps(reports))


if __name__ == "__main__":
    main()
