"""Is the video generator's trouble the data or the shape? The same x-prediction video DiT
(avsynth-s's: 16x16 patches, width 160, noise shift 6, sampled at shift 1.5), fresh, trained the
same way on two worlds for the same steps, scored the same way as it trains.

usage: python experiments/simple_world.py OUT [--world simple|avsynth] [--steps 1500]
       [--every 250] [--clips 2000] [--threads 1]

- simple: one ball (radius 3-5 px at 32x32) of a random colour bouncing under gravity on a flat
  floor band, before a flat background: the smallest world in which something hits.
- avsynth: the AVSynth training renders (`synth.render_clip`), the default model's data.

Loop: AdamW (lr 5e-4, betas 0.9/0.99, weight decay 0.01), 100 warmup steps then cosine to 10%,
EMA 0.999, grad clip 1, batch 16, the empty prompt, logit-normal times shifted by 6, the
project's flow loss. Every --every steps: 16 samples of 25 Euler steps from the EMA weights
against 16 held-out clips of the same world (`realism.compare`), a line of JSON, and a contact
sheet OUT/sheet-STEP.png (rows: 4 samples, then 4 true clips; columns frames 0, 6, ..., 42).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from vgen_probe import sheet  # experiments/ is on the path when run as a script

from avlink_cli import flow, realism
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import tokens_to_video, video_to_tokens
from avlink_cli.dit import DiT
from avlink_cli.plots import encode_png
from avlink_cli.synth import render_clip


def simple_clip(rng: np.random.Generator, t: int = 48, size: int = 32, fps: float = 12.0):
    """One bouncing ball on a flat floor before a flat background: (T, H, W, 3) uint8."""
    bg, floor_c, ball_c = (rng.uniform(0.05, 0.95, 3) for _ in range(3))
    while np.abs(ball_c - bg).sum() < 0.6 or np.abs(ball_c - floor_c).sum() < 0.6:
        ball_c = rng.uniform(0.05, 0.95, 3)
    top = int(rng.integers(24, 29))  # floor band rows top..size-1
    r = float(rng.uniform(3.0, 5.0))
    x, y = float(rng.uniform(r, size - r)), float(rng.uniform(r, top - r - 6))
    vx, vy = float(rng.uniform(-12, 12)), 0.0
    g, bounce = 60.0, float(rng.uniform(0.75, 0.9))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    frames = np.empty((t, size, size, 3), np.uint8)
    dt = 1.0 / fps / 8
    for k in range(t):
        img = np.broadcast_to(bg, (size, size, 3)).copy()
        img[top:] = floor_c
        cover = np.clip(r + 0.5 - np.hypot(xx - x, yy - y), 0, 1)[..., None]  # anti-aliased
        frames[k] = np.round(255 * (img * (1 - cover) + ball_c * cover))
        for _ in range(8):
            vy += g * dt
            x, y = x + vx * dt, y + vy * dt
            if y > top - r:
                y, vy = top - r, -abs(vy) * bounce
            if not r <= x <= size - r:
                vx = -vx
                x = min(max(x, r), size - r)
    return frames


def sincos_positions(grid: tuple[int, ...], width: int) -> torch.Tensor:
    """Fixed absolute positions (N, width): sin/cos of each grid axis, concatenated (as DiT's
    2-D table, over (t, h, w)); the DiT's RoPE alone gives only relative offsets."""
    axes = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in grid), indexing="ij")
    dims = [width // len(grid) // 2 * 2] * (len(grid) - 1)
    dims.append(width - sum(dims))
    parts = []
    for pos, d in zip(axes, dims, strict=True):
        freq = 1.0 / 10_000 ** (torch.arange(d // 2, dtype=torch.float32) / (d // 2))
        ang = pos.reshape(-1, 1) * freq
        parts += [ang.sin(), ang.cos()]
    return torch.cat(parts, 1)


class AbsPosDiT(DiT):
    """The DiT with fixed absolute positions added to the embedded tokens (a hook on `embed`)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.register_buffer("abs_pos", sincos_positions(self.grid, self.cfg.width), False)
        self.embed.register_forward_hook(
            lambda _m, _i, out: (out[0] + self.abs_pos.to(out[0].dtype), out[1])
        )


class SkipDiT(DiT):
    """x-prediction with EDM's preconditioning: x-hat = c_skip(t) x_t + c_out(t) F, where
    c_skip x_t is the best linear estimate of x1 from x_t (data std SIGMA), so the network adds
    only what x_t does not already say, and x_t's detail reaches the output whole."""

    SIGMA = 0.5

    def velocity_of(self, out, x, t):
        s2, tt = self.SIGMA**2, t.float().view(-1, 1, 1)
        var = (1 - tt) ** 2 + tt**2 * s2
        xhat = tt * s2 / var * x.float() + (1 - tt) * self.SIGMA / var.sqrt() * out.float()
        return super().velocity_of(xhat, x, t)


def world(name: str, preset, n: int, seed: int, split: str) -> np.ndarray:
    if name == "simple":
        rng = np.random.default_rng([seed, split == "test"])
        return np.stack([simple_clip(rng, preset.n_frames, preset.video.height) for _ in range(n)])
    return np.stack([render_clip(preset, seed=seed + i, split=split).frames for i in range(n)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--world", choices=["simple", "avsynth"], default="simple")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--abs-pos", action="store_true", help="add fixed absolute positions")
    ap.add_argument("--skip", action="store_true", help="x-hat = c_skip x_t + c_out F (EDM)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    model = load_model(Path("weights/avsynth-s")).model.eval()
    preset, old = model.preset, model.video_dit
    cfg = replace(old.cfg, prediction="x", t_shift=6.0, sample_shift=1.5)
    make = AbsPosDiT if args.abs_pos else SkipDiT if args.skip else DiT
    dit = make(cfg, token_dim=old.token_dim, grid=old.grid, context_dim=preset.text.width)
    ema = {k: p.detach().clone() for k, p in dit.named_parameters()}
    with torch.no_grad():
        ctx = model.null_context(args.batch)
    t0 = time.time()
    data = world(args.world, preset, args.clips, args.seed, "train")
    true = list(world(args.world, preset, 16, 10_000 + args.seed, "test"))
    print(f"{args.world}: {len(data)} clips in {time.time() - t0:.0f} s", flush=True)
    tokens = video_to_tokens(torch.from_numpy(data), preset.video)  # (N, tokens, dim)
    opt = torch.optim.AdamW(dit.parameters(), lr=5e-4, betas=(0.9, 0.99), weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    log = (args.out / "log.jsonl").open("a")
    t0 = time.time()
    for step in range(1, args.steps + 1):
        frac = max(0.0, (step - 100) / max(1, args.steps - 100))
        lr = 5e-4 * (step / 100 if step < 100 else 0.1 + 0.45 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        x1 = tokens[torch.randint(len(tokens), (args.batch,), generator=gen)]
        t = flow.shift_time(torch.sigmoid(torch.randn(args.batch, generator=gen)), cfg.t_shift)
        x0 = torch.randn(x1.shape, generator=gen)
        loss = flow.loss(dit(flow.interpolate(x0, x1, t), t, ctx), x0, x1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dit.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(0.999, (1 + step) / (10 + step))
            for k, p in dit.named_parameters():
                ema[k].lerp_(p.detach(), 1 - d)
        if step % args.every == 0 or step == args.steps:
            live = {k: p.detach().clone() for k, p in dit.named_parameters()}
            with torch.no_grad():
                dit.load_state_dict(ema, strict=False)
                x0s = torch.randn((16, *x1.shape[1:]), generator=torch.Generator().manual_seed(7))
                ctx16 = model.null_context(16)
                x = flow.sample(lambda x, t, c=ctx16: dit(x, t, c), x0s, steps=25, shift=1.5)
                samples = list(tokens_to_video(x, preset).numpy())
                dit.load_state_dict(live, strict=False)
            rep = realism.compare(samples, true)
            rec = {
                "world": args.world,
                "abs_pos": args.abs_pos,
                "skip": args.skip,
                "step": step,
                "loss": round(loss.item(), 4),
            }
            rec |= {
                "minutes": round((time.time() - t0) / 60, 1),
                "fd_floor": realism.fd_floor(true),
            }
            rec |= {k: rep[k] for k in rep if k.endswith("_ratio") or k == "fd"}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            img = sheet(samples[:4] + true[:4], range(0, preset.n_frames, 6))
            (args.out / f"sheet-{step}.png").write_bytes(encode_png(img))
    dit.load_state_dict(ema, strict=False)
    save_file({k: v.contiguous() for k, v in ema.items()}, args.out / "ema.safetensors")
    probe(dit, model, preset, tokens, true, args.out)


@torch.no_grad()
def probe(dit, model, preset, tokens, true, out: Path) -> None:
    """The trained EMA DiT: is it the denoiser or the sampler? x-hat error at three noise levels
    against predicting each token position's training mean, then samples on other grids."""
    x1 = video_to_tokens(torch.from_numpy(np.stack(true)), preset.video)
    ctx = model.null_context(len(true))
    g = torch.Generator().manual_seed(11)
    x0 = torch.randn(x1.shape, generator=g)
    mean_err = (tokens.mean(0, keepdim=True) - x1).square().mean().item()
    for t in (0.2, 0.5, 0.8):
        tt = torch.full((len(true),), t)
        xt = flow.interpolate(x0, x1, tt)
        xhat = xt + (1 - t) * dit(xt, tt, ctx)
        err = (xhat - x1).square().mean().item()
        print(json.dumps({"t": t, "xhat_err": round(err, 4), "mean_err": round(mean_err, 4)}))
    rows = []
    for steps, shift, from_t in (
        (25, 1.0, None),
        (25, 6.0, None),
        (100, 1.5, None),
        (25, 1.5, 0.8),
    ):
        if from_t is None:
            x = flow.sample(lambda x, t: dit(x, t, ctx), x0, steps=steps, shift=shift)
        else:
            ts = flow.time_grid(steps, shift=shift)
            ts = torch.cat([torch.tensor([from_t]), ts[ts > from_t]])
            x = flow.interpolate(x0, x1, torch.full((len(true),), from_t))
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                x = x + (t_next - t) * dit(x, t.expand(len(true)), ctx)
        gen = list(tokens_to_video(x, preset).numpy())
        rep = realism.compare(gen, true)
        rec = {
            "steps": steps,
            "shift": shift,
            "from_t": from_t,
            "token_std": round(x.std().item(), 3),
        }
        rec |= {k: rep[k] for k in rep if k.endswith("_ratio") or k == "fd"}
        print(json.dumps(rec), flush=True)
        rows += gen[:2]
    (out / "probe.png").write_bytes(
        encode_png(sheet(rows + true[:2], range(0, preset.n_frames, 6)))
    )


if __name__ == "__main__":
    main()
