"""Motion guidance, measured (not shipped): `avlink dub` or `avlink animate` with a second guidance
term against the same clip with its timing taken out.

    python experiments/motion_guidance.py --scale 2 dub CLIPS -o OUT --model weights/avsynth-s
    python experiments/motion_guidance.py --scale 32 animate CLIPS/*.mp4 -o OUT --model ...

Every sampling step becomes v = cfg(v_c, v_u) + scale * (v_c - v_s): v_c and v_u are the usual
conditional and unconditional velocities, v_s the Fusion's velocity for the conditioning with its
timing removed. For dub that is the video held at its first frame (nothing moves, the scene is the
same); for animate, the audio replaced by its mean token (the same sound spread evenly, no events).
Whatever is not an argument of this script goes to the avlink CLI unchanged; --scale 0 samples
what avlink does (to float rounding). It costs one more Fusion pass per step. The scores are in
README.md, "What we know about why".
"""

from __future__ import annotations

import argparse
import sys

import torch

from avlink_cli import flow
from avlink_cli.cli import main
from avlink_cli.pipeline import Engine, inpainted


def without_timing(direction: str, cond: torch.Tensor, engine: Engine) -> torch.Tensor:
    """Clean conditioning tokens (B, N, D) -> the same clip with no events in time."""
    if direction == "a2v":  # audio tokens: each one the clip's mean token
        return cond.mean(dim=1, keepdim=True).expand_as(cond).contiguous()
    p = engine.preset
    groups = p.n_frame_groups
    b, n, d = cond.shape
    first = cond.reshape(b, groups, n // groups, d)[:, :1]  # (t, h, w) token order
    return first.expand(b, groups, n // groups, d).reshape(b, n, d)


def guided_sample(scale: float):
    def sample(
        self: Engine,
        direction: str,
        cond: torch.Tensor,
        *,
        x0: torch.Tensor,
        cond_noise: torch.Tensor,
        prompts,
        negative_prompts,
        steps: int | None = None,
        cfg: float | None = None,
        sampler: str = "euler",
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        callback=None,
    ) -> torch.Tensor:
        steps = self.default_steps(direction) if steps is None else steps
        cfg = self.default_cfg(direction) if cfg is None else cfg
        model, dev = self.model, self.device
        x0, cond = x0.to(dev, torch.float32), cond.to(dev, torch.float32)
        ctx = model.encode_text(list(prompts))
        neg = model.encode_text(list(negative_prompts))
        noise = cond_noise.to(dev)
        cache = model.prepare_condition(direction, cond, ctx, noise=noise)
        flat = model.prepare_condition(
            direction, without_timing(direction, cond, self), ctx, noise=noise
        )

        def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v_c, v_u = model.velocity_cfg(direction, x, t, cache, ctx, neg)
            v_s = model.velocity(direction, x, t, flat, ctx)
            return flow.cfg(v_c, v_u, cfg) + scale * (v_c - v_s)

        if known is not None and known_mask is not None:  # the overlap of a long input's windows
            known, known_mask = known.to(dev, torch.float32), known_mask.to(dev)
            v = inpainted(v, x0, known, known_mask)
        step_cb = None if callback is None else (lambda i, n, x: callback(i, n))
        x = flow.sample(
            v, x0, steps=steps, method=sampler, shift=self.default_shift("v2a"), callback=step_cb
        )
        if known is not None and known_mask is not None:
            x = torch.where(known_mask[..., None], known, x)
        return x

    return torch.inference_mode()(sample)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, required=True, help="weight of (v_c - v_s)")
    args, rest = ap.parse_known_args()
    Engine.sample = guided_sample(args.scale)
    sys.argv = ["avlink", *rest]
    main()
