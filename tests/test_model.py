"""AV-Link on the tiny preset: zero-init equivalence, what trains, the exact cache, CFG, seeds,
ablation switches, the null prompt, and the paper's parameter counts on the meta device."""

from dataclasses import replace

import pytest
import torch
from avlink_helpers import fusion_loss, make_velocity_fn

from avlink_cli import flow
from avlink_cli.avlink import Ablation, AVLink
from avlink_cli.catalog import count_parameters
from avlink_cli.fusion_motion import frame_differences
from avlink_cli.presets import get_preset

TINY = get_preset("tiny")
MOTION = TINY.with_(fusion=replace(TINY.fusion, motion=True))  # Fusion with the motion path
CONTEXT = TINY.with_(fusion=replace(MOTION.fusion, motion_context=32))  # ... and MotionContext
DIRECTIONS = ("v2a", "a2v")


def perturb(module: torch.nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    """Stand-in for training: every parameter moves off its (often zero) initial value."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def make_model(
    ablation: Ablation | None = None, *, fusion: bool = False, motion: bool | str = False
) -> AVLink:
    """motion: False, True (the motion path) or "context" (the motion path and MotionContext)."""
    torch.manual_seed(0)
    model = AVLink({False: TINY, True: MOTION, "context": CONTEXT}[motion], ablation)
    for name in ("video_dit", "audio_dit", "text"):
        perturb(getattr(model, name), seed=len(name))
    if fusion:
        perturb(model.fusion, scale=0.3, seed=7)
    return model.eval()


def tokens(batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "audio": torch.randn(batch, TINY.n_audio_tokens, TINY.audio.token_dim, generator=gen),
        "video": torch.randn(batch, TINY.n_video_tokens, TINY.video.token_dim, generator=gen),
    }


def split(direction: str, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return (x["audio"], x["video"]) if direction == "v2a" else (x["video"], x["audio"])


@pytest.mark.parametrize("motion", [False, True, "context"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_fresh_fusion_equals_the_frozen_generator_bit_for_bit(direction: str, motion) -> None:
    model = make_model(motion=motion)
    gen, cond = split(direction, tokens())
    ctx = model.encode_text(["a ball bounces", ""])
    cache = model.prepare_condition(
        direction, cond, ctx, generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        v = model.velocity(direction, gen, torch.tensor([0.3, 0.7]), cache, ctx)
        alone = model.dit("audio" if direction == "v2a" else "video")(
            gen, torch.tensor([0.3, 0.7]), ctx
        )
    assert v.shape == gen.shape and v.abs().sum() > 0
    assert torch.equal(v, alone)


def test_an_optimizer_step_changes_fusion_only() -> None:
    model = make_model()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {
        id(p) for p in model.fusion_parameters()
    }
    x = tokens()
    ctx = model.encode_text(["a drum", "a bell"])
    for direction in DIRECTIONS:
        gen, cond = split(direction, x)
        fusion_loss(
            model, direction, gen, cond, ctx, generator=torch.Generator().manual_seed(0)
        ).backward()
    opt.step()
    for name in ("video_dit", "audio_dit", "text"):
        for p in getattr(model, name).parameters():
            assert p.grad is None and not p.requires_grad
    changed = {
        k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])
    }
    assert changed == {"fusion"}


def test_motion_context_starts_silent_and_sees_the_whole_clip() -> None:
    """A Fusion given MotionContext on top of trained weights computes what it did (the reads
    start at zero), and MotionContext's features at one frame depend on frames far from it,
    where the per-patch motion features see only the neighbouring frames."""
    trained = make_model(fusion=True, motion=True)
    grown = make_model(motion="context")
    missing, unexpected = grown.fusion.load_state_dict(trained.fusion.state_dict(), strict=False)
    assert not unexpected and missing and all("context" in k for k in missing)
    video = tokens()["video"]
    with torch.no_grad():
        pairs = zip(
            trained.fusion.motion_terms(video), grown.fusion.motion_terms(video), strict=True
        )
        for a, b in pairs:
            assert torch.equal(a, b)
        per = CONTEXT.video.tokens_per_frame_group
        moved = video.clone()
        moved[:, :per] += 1.0  # change the first frame only
        last = slice(-per, None)
        ctx, ctx_moved = (grown.fusion.context_features(x)[:, last] for x in (video, moved))
        feats, feats_moved = (
            frame_differences(x, grown.fusion.video_per_frame)[:, last] for x in (video, moved)
        )
    assert ctx.shape == (2, per, 32)
    assert (ctx - ctx_moved).abs().max() > 1e-3  # the last frame's context sees the first
    assert torch.equal(feats, feats_moved)  # its own change does not
    # and once its reads are trained, the blocks' motion terms carry it
    perturb(grown.fusion, scale=0.3, seed=7)
    with torch.no_grad():
        terms = grown.fusion.motion_terms(video)[0][:, last]
        terms_moved = grown.fusion.motion_terms(moved)[0][:, last]
    assert (terms - terms_moved).abs().max() > 1e-3


@pytest.mark.parametrize(
    "ablation, motion",
    [
        (Ablation(), False),
        (Ablation(reinject_cond=False), False),
        (Ablation(external_features=True), False),
        (Ablation(), True),
        (Ablation(), "context"),
    ],
)
def test_exact_cache_changes_no_sample(ablation: Ablation, motion) -> None:
    model = make_model(ablation, fusion=True, motion=motion)
    if model.external is not None:
        perturb(model.external, seed=3)
    for direction in DIRECTIONS:
        gen, cond = split(direction, tokens())
        outs = []
        for precompute in (True, False):
            v = make_velocity_fn(
                model,
                direction,
                cond,
                "a ball",
                cfg_scale=2.5,
                generator=torch.Generator().manual_seed(4),
                precompute=precompute,
            )
            outs.append(
                flow.sample(
                    v,
                    torch.randn(gen.shape, generator=torch.Generator().manual_seed(5)),
                    steps=3,
                    method="heun",
                )
            )
        assert torch.equal(outs[0], outs[1])


def test_cache_skips_conditioning_blocks_and_uncond_skips_conditioning_backbone() -> None:
    model = make_model(fusion=True)
    calls: list[int] = []
    for i, block in enumerate(model.video_dit.blocks):
        block.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    gen, cond = split("v2a", tokens())
    ctx = model.encode_text(["", ""])
    with torch.no_grad():
        cache = model.prepare_condition("v2a", cond, ctx)
        first = model.plan[0]["video"]
        assert calls == list(range(first + 1))
        calls.clear()
        model.velocity("v2a", gen, 0.5, cache, ctx)
        assert calls and min(calls) > first and max(calls) <= model.plan[-1]["video"]
        calls.clear()
        model.uncond_velocity("v2a", gen, 0.5, ctx)
        assert calls == []


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_batched_cfg_matches_separate_calls(direction: str) -> None:
    model = make_model(fusion=True)
    gen, cond = split(direction, tokens())
    x0 = torch.randn(gen.shape, generator=torch.Generator().manual_seed(2))
    outs = [
        flow.sample(
            make_velocity_fn(
                model,
                direction,
                cond,
                "a drum",
                "noise",
                3.0,
                torch.Generator().manual_seed(0),
                batch_cfg=b,
            ),
            x0,
            steps=3,
        )
        for b in (True, False)
    ]
    assert torch.allclose(outs[0], outs[1], atol=1e-4)
    plain = flow.sample(
        make_velocity_fn(
            model, direction, cond, "a drum", "noise", 1.0, torch.Generator().manual_seed(0)
        ),
        x0,
        steps=3,
    )
    assert not torch.allclose(plain, outs[0], atol=1e-3)


def test_same_seed_same_output_different_seed_different_output() -> None:
    model = make_model(fusion=True)
    gen, cond = split("v2a", tokens())

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        v = make_velocity_fn(model, "v2a", cond, "a bell", cfg_scale=2.0, generator=g)
        return flow.sample(v, torch.randn(gen.shape, generator=g), steps=3)

    assert torch.equal(run(11), run(11))
    assert not torch.allclose(run(11), run(12))


def test_each_ablation_switch_changes_the_output() -> None:
    base = make_model(fusion=True)
    state = base.state_dict()
    ctx = base.encode_text(["a ball", "a drum"])

    def velocity(model: AVLink, direction: str) -> torch.Tensor:
        gen, cond = split(direction, tokens())
        cache = model.prepare_condition(
            direction, cond, ctx, generator=torch.Generator().manual_seed(3)
        )
        with torch.no_grad():
            return model.velocity(direction, gen, 0.4, cache, ctx)

    for switch in (
        Ablation(reinject_cond=False),
        Ablation(rope_by_index=True),
        Ablation(external_features=True),
    ):
        model = AVLink(TINY, switch).eval()
        model.load_state_dict(state, strict=False)
        if model.external is not None:
            perturb(model.external, seed=5)
        for direction in DIRECTIONS:
            assert not torch.allclose(
                velocity(model, direction), velocity(base, direction), atol=1e-5
            ), (switch, direction)

    uniform = AVLink(TINY, Ablation(uniform_t_cond=True))
    uniform.load_state_dict(state)
    t_fixed = base.sample_t_cond("v2a", 64, generator=torch.Generator().manual_seed(0))
    t_uniform = uniform.sample_t_cond("v2a", 64, generator=torch.Generator().manual_seed(0))
    assert (t_fixed == 0.96).all() and t_uniform.std() > 0.1
    x = tokens()
    losses = [
        fusion_loss(
            m, "v2a", x["audio"], x["video"], ctx, generator=torch.Generator().manual_seed(0)
        ).item()
        for m in (base, uniform)
    ]
    assert losses[0] != losses[1]
    assert torch.equal(
        velocity(uniform, "v2a"), velocity(base, "v2a")
    )  # inference uses the fixed t_cond


def test_empty_prompt_is_a_fixed_null_condition() -> None:
    model = make_model()
    ctx = model.encode_text(["", "   ", "a ball bounces"])
    assert torch.equal(ctx.mask[0], ctx.mask[1]) and ctx.mask[0].sum() == 1
    assert torch.equal(ctx.tokens[0], ctx.tokens[1]) and ctx.tokens[0, 1:].abs().sum() == 0
    assert torch.equal(model.null_context(3).tokens[2], ctx.tokens[0])
    assert ctx.mask[2].sum() == len("a ball bounces") + 2


def test_wrong_shapes_and_directions_are_errors() -> None:
    model = make_model()
    x = tokens()
    ctx = model.encode_text(["", ""])
    with pytest.raises(ValueError, match="direction"):
        model.prepare_condition("x2y", x["video"], ctx)
    with pytest.raises(ValueError, match="expected tokens"):
        model.prepare_condition("v2a", x["audio"], ctx)
    cache = model.prepare_condition("v2a", x["video"], ctx)
    with pytest.raises(ValueError, match="prepared for v2a"):
        model.velocity("a2v", x["video"], 0.5, cache, ctx)


def test_paper_parameter_counts_on_meta() -> None:
    counts = count_parameters(get_preset("paper"))
    for name, target in (("video_dit", 576e6), ("audio_dit", 576e6), ("fusion", 186e6)):
        assert abs(counts[name] / target - 1) <= 0.03, (name, counts[name])
    paper = get_preset("paper")
    assert (
        paper.n_video_tokens == 4320 and paper.n_audio_tokens == 125 and paper.video_dit.depth >= 22
    )
