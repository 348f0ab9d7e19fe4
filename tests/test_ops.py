"""Pure math: RoPE (float positions, multi-axis, time alignment across modalities), attention,
modulation, time embedding; the Fusion Block's attention depends on time, not token index."""

from dataclasses import replace

import torch

from avlink_cli.fusion import FusionBlock, fusion_plan, fusion_positions
from avlink_cli.fusion_motion import frame_differences
from avlink_cli.ops import (
    apply_rope,
    as_time,
    attention,
    grid_positions,
    modulate,
    rope,
    rope_axes,
    rope_nd,
    timestep_embedding,
)
from avlink_cli.presets import get_preset

TINY = get_preset("tiny")


def test_rope_equal_positions_equal_rotations() -> None:
    pe = rope(torch.tensor([3.0, 3.0, 4.0]), 16)
    assert pe.shape == (3, 8, 2)
    assert torch.equal(pe[0], pe[1])
    assert not torch.equal(pe[0], pe[2])


def test_rope_is_a_rotation_with_relative_scores() -> None:
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(p: float, r: float) -> torch.Tensor:
        return (
            apply_rope(q, rope(torch.tensor([p]), 16)) * apply_rope(k, rope(torch.tensor([r]), 16))
        ).sum()

    assert torch.allclose(apply_rope(q, rope(torch.tensor([7.5]), 16)).norm(), q.norm(), atol=1e-5)
    assert torch.allclose(score(2.0, 5.0), score(12.0, 15.0), atol=1e-4)  # depends on p - r only
    assert not torch.allclose(score(2.0, 5.0), score(2.0, 9.0), atol=1e-4)


def test_rope_rotates_each_token_by_its_own_angle_in_token_major_memory() -> None:
    """Per-sample tables too; the result is a (B, H, N, d) view of (B, N, H, d) rows, the layout
    the fused projections write and attention kernels read (a compiled graph then writes rows)."""
    x = torch.randn(2, 3, 5, 8)  # (B, H, N, d)
    pos = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
    pe = rope(pos, 8)  # (B, N, 4, 2)
    out = apply_rope(x, pe)
    assert out.shape == x.shape and out.transpose(1, 2).is_contiguous()
    for b in range(2):
        for n in range(5):  # token n of sample b, alone, with its own one-row table
            one = apply_rope(x[b : b + 1, :, n : n + 1], rope(pos[b, n : n + 1], 8))
            assert torch.allclose(out[b : b + 1, :, n : n + 1], one, atol=1e-6)
    assert torch.equal(apply_rope(x, pe[:, None]), out)  # the (B, 1, N, d / 2, 2) form


def test_audio_and_video_tokens_at_the_same_second_share_a_rotation() -> None:
    pa, pv = fusion_positions(TINY)  # audio 25 tokens/s, video 8 frames/s, 4 tokens a frame
    per_frame = TINY.video.tokens_per_frame_group
    pe = rope(torch.cat([pa, pv]), 16)
    pe_a, pe_v = pe[: len(pa)], pe[len(pa) :]
    assert torch.equal(pe_a[25], pe_v[8 * per_frame])  # both at t = 1 s
    assert torch.equal(pe_v[8 * per_frame], pe_v[8 * per_frame + 3])  # one frame, one time
    assert not torch.equal(pe_a[24], pe_v[8 * per_frame])  # 0.96 s vs 1 s
    ia, iv = fusion_positions(TINY, by_index=True)  # the ablation: by index, misaligned
    assert ia[25] == 25 and iv[8 * per_frame] == 8


def test_rope_nd_splits_the_head_over_axes() -> None:
    assert (
        rope_axes(64, 3) == (24, 20, 20)
        and rope_axes(16, 3) == (8, 4, 4)
        and rope_axes(32, 1) == (32,)
    )
    pos = grid_positions((2, 3, 4))
    assert pos.shape == (24, 3) and pos[5].tolist() == [0.0, 1.0, 1.0]
    pe = rope_nd(pos, (8, 4, 4))
    assert pe.shape == (24, 8, 2)
    assert torch.equal(pe[0, :4], pe[12, :4]) is False  # time axis differs between frames
    assert torch.equal(pe[0, 4:], pe[12, 4:])  # same (h, w) in both frames


def test_attention_mask_ignores_padding() -> None:
    q, k, v = torch.randn(2, 2, 3, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    mask = torch.tensor([[True, True, False, False, False]] * 2)
    k2, v2 = k.clone(), v.clone()
    k2[..., 2:, :], v2[..., 2:, :] = 100.0, -100.0
    out = attention(q, k, v, mask=mask)
    assert out.shape == (2, 3, 16)
    assert torch.allclose(out, attention(q, k2, v2, mask=mask))


def test_modulate_time_embedding_and_time() -> None:
    x = torch.randn(2, 3, 4)
    assert torch.equal(modulate(x, torch.zeros(2, 4), torch.zeros(2, 4)), x)
    emb = timestep_embedding(torch.tensor([0.0, 0.5, 1.0]), 256)
    assert emb.shape == (3, 256) and not torch.equal(emb[0], emb[1])
    assert as_time(0.3, 4).shape == (4,)


def _fusion_block(dim: int = 32) -> FusionBlock:
    torch.manual_seed(0)
    block = FusionBlock(TINY.fusion, audio_dim=dim, video_dim=dim)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)  # non-zero gates and modulations
    return block


def test_fusion_attention_depends_on_time_not_index() -> None:
    block = _fusion_block()
    xa, xv = torch.randn(1, 6, 32), torch.randn(1, 4, 32)
    ca, cv = torch.randn(1, 32), torch.randn(1, 32)
    pa, pv = torch.tensor([0.0, 1, 2, 3, 4, 5]), torch.tensor([0.0, 0, 3, 3])
    head = 32 // 2

    def run(xa, xv, pa, pv):
        return block(xa, xv, ca, cv, rope(torch.cat([pa, pv]), head))

    ya, yv = run(xa, xv, pa, pv)
    perm_a, perm_v = torch.tensor([3, 0, 5, 1, 4, 2]), torch.tensor([2, 0, 3, 1])
    za, zv = run(xa[:, perm_a], xv[:, perm_v], pa[perm_a], pv[perm_v])  # indices moved, times kept
    assert torch.allclose(za, ya[:, perm_a], atol=1e-5) and torch.allclose(
        zv, yv[:, perm_v], atol=1e-5
    )
    sa, sv = run(xa, xv, pa + 7.0, pv + 7.0)  # every time shifted together: same relative timing
    assert torch.allclose(sa, ya, atol=1e-4) and torch.allclose(sv, yv, atol=1e-4)
    wa, wv = run(xa, xv, pa, pv + 2.0)  # video moved in time against the audio
    assert not torch.allclose(wa, ya, atol=1e-3) and not torch.allclose(wv, yv, atol=1e-3)


def test_fresh_fusion_block_is_identity() -> None:
    from avlink_cli.fusion import Fusion

    fusion = Fusion(TINY.fusion, audio_dim=32, video_dim=32)
    xa, xv = torch.randn(2, 5, 32), torch.randn(2, 3, 32)
    ya, yv = fusion.blocks[0](
        xa, xv, torch.randn(2, 32), torch.randn(2, 32), fusion.rope(torch.arange(8.0))
    )
    assert torch.equal(ya, xa) and torch.equal(yv, xv)


def test_frame_differences_to_the_previous_and_next_frame() -> None:
    x = torch.arange(3 * 2, dtype=torch.float32).reshape(1, 6, 1) ** 2  # 3 frames, 2 tokens each
    d = frame_differences(x, 2)  # token (t, s) is x[2t + s]: values 0 1 | 4 9 | 16 25
    assert d.shape == (1, 6, 2)
    assert d[0, :, 0].tolist() == [0, 0, 4, 8, 12, 16]  # minus the previous frame (0 at t = 0)
    assert d[0, :, 1].tolist() == [4, 8, 12, 16, 0, 0]  # the next frame minus this one


def test_motion_path_reads_change_between_frames_only() -> None:
    from avlink_cli.fusion import Fusion

    cfg = replace(TINY.fusion, motion=True)
    fusion = Fusion(cfg, audio_dim=32, video_dim=32, video_token_dim=12, video_per_frame=2)
    xa, xv = torch.randn(1, 5, 32), torch.randn(1, 6, 32)  # 3 video frames of 2 tokens
    ca, cv, pe = torch.randn(1, 32), torch.randn(1, 32), fusion.rope(torch.arange(11.0))
    moving_tokens = torch.randn(1, 6, 12)
    still_tokens = torch.randn(1, 2, 12).repeat(1, 3, 1)  # one frame 3 times
    moving, still = (
        frame_differences(x, fusion.video_per_frame) for x in (moving_tokens, still_tokens)
    )
    assert moving.shape == (1, 6, 24) and still.abs().max() == 0
    block = fusion.blocks[0]
    ya, yv = block(xa, xv, ca, cv, pe, motion_v=fusion.motion_terms(moving_tokens)[0])
    assert torch.equal(ya, xa) and torch.equal(yv, xv)  # fresh: the identity, motion path or not
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    moving, still = (fusion.motion_terms(x)[0] for x in (moving_tokens, still_tokens))

    def run(motion: torch.Tensor | None) -> torch.Tensor:
        saved = block.video.motion
        block.video.motion = saved if motion is not None else None
        try:
            with torch.no_grad():
                return block(xa, xv, ca, cv, pe, motion_v=motion)[0]
        finally:
            block.video.motion = saved

    assert torch.allclose(run(still), run(None), atol=1e-6)  # a still video adds nothing
    assert not torch.allclose(run(moving), run(None), atol=1e-3)
    try:
        block(xa, xv, ca, cv, pe)
    except ValueError as e:
        assert "motion" in str(e)
    else:
        raise AssertionError("a block with a motion path must be given motion features")
    try:
        Fusion(cfg, audio_dim=32, video_dim=32)
    except ValueError as e:
        assert "video_per_frame" in str(e)
    else:
        raise AssertionError("motion without the video token sizes must be refused")


def test_fusion_plan_interleaves_evenly() -> None:
    assert fusion_plan(8, 24, 24) == [(i, i) for i in (2, 4, 7, 10, 12, 15, 18, 20)]
    plan = fusion_plan(3, 6, 12)
    assert [a for a, _ in plan] == sorted(a for a, _ in plan) and all(
        0 <= a < 6 and 0 <= v < 12 for a, v in plan
    )
    assert [v for _, v in plan] == [2, 5, 8]
    assert fusion_plan(4, 2, 2) == [(0, 0), (0, 0), (0, 0), (1, 1)]  # more blocks than depth
    assert fusion_plan(0, 4, 4) == []
