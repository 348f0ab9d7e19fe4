"""Test-side helpers over AVLink: one Fusion-stage training loss and a sampler's velocity
callable for one batch of clips. The product trains through training/stages.py and samples
through pipeline.py; these are the small, direct forms the model tests check AVLink with."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from avlink_cli import flow
from avlink_cli.avlink import AVLink
from avlink_cli.text import TextContext


def fusion_loss(
    model: AVLink,
    direction: str,
    gen_clean: Tensor,
    cond_clean: Tensor,
    ctx: TextContext,
    *,
    generator: torch.Generator | None = None,
    t_shift: float = 1.0,
) -> Tensor:
    """One Fusion-stage training loss: generated side at logit-normal t, conditioning side at the
    training t_cond (fixed, or uniform with the ablation); MSE against x1 - x0."""
    batch, device = gen_clean.shape[0], gen_clean.device
    gen_device = generator.device if generator is not None else device
    x0 = torch.randn(
        gen_clean.shape, generator=generator, device=gen_device, dtype=gen_clean.dtype
    ).to(device)
    t = flow.sample_t(batch, shift=t_shift, generator=generator, device=device)
    t_cond = model.sample_t_cond(direction, batch, generator=generator, device=device)
    cache = model.prepare_condition(direction, cond_clean, ctx, t_cond=t_cond, generator=generator)
    v = model.velocity(direction, flow.interpolate(x0, gen_clean, t), t, cache, ctx)
    return flow.loss(v, x0, gen_clean)


def make_velocity_fn(
    model: AVLink,
    direction: str,
    cond_clean: Tensor,
    prompt: str | Sequence[str] = "",
    negative_prompt: str | Sequence[str] = "",
    cfg_scale: float = 1.0,
    generator: torch.Generator | None = None,
    *,
    t_cond: float | None = None,
    precompute: bool = True,
    batch_cfg: bool = True,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The sampler's v(x, t) for one batch of clips: prompts encoded and the conditioning side
    prepared once, here. With cfg_scale != 1 the unconditional branch (generated DiT alone with
    `negative_prompt`, "" by default) runs batched with the conditional one (`velocity_cfg`), or
    as a separate call with batch_cfg=False."""
    batch = cond_clean.shape[0]

    def expand(p: str | Sequence[str]) -> list[str]:
        ps = [p] * batch if isinstance(p, str) else list(p)
        if len(ps) != batch:
            raise ValueError(f"{len(ps)} prompts for a batch of {batch}")
        return ps

    with torch.no_grad():
        ctx = model.encode_text(expand(prompt))
        neg = model.encode_text(expand(negative_prompt)) if cfg_scale != 1.0 else None
        cache = model.prepare_condition(
            direction, cond_clean, ctx, t_cond=t_cond, generator=generator, precompute=precompute
        )

    @torch.no_grad()
    def v(x: Tensor, t: Tensor) -> Tensor:
        if neg is None:
            return model.velocity(direction, x, t, cache, ctx)
        if batch_cfg:
            v_c, v_u = model.velocity_cfg(direction, x, t, cache, ctx, neg)
        else:
            v_c, v_u = (
                model.velocity(direction, x, t, cache, ctx),
                model.uncond_velocity(direction, x, t, neg),
            )
        return flow.cfg(v_c, v_u, cfg_scale)

    return v
