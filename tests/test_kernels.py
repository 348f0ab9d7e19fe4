"""The fused GPU kernels (avlink_cli/kernels.py) against the PyTorch code that defines them.

Triton is not part of CPU installs, so these run where it is installed: on a CUDA machine on the
GPU, elsewhere in Triton's interpreter (TRITON_INTERPRET=1, set before Triton compiles anything,
hence a subprocess; it truncates to bf16 where a GPU rounds). CI's CPU install has no Triton and
skips them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="Triton is not installed"
)

CHECK = textwrap.dedent(
    """
    import torch
    from avlink_cli import kernels
    from avlink_cli.layers import SelfAttention
    from avlink_cli.ops import apply_rope, grid_positions, rope_axes, rope_nd

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    # a 3D-RoPE video layer with 2 heads of 64, and a 1D one with 5 heads of 32 written at an
    # offset into a longer buffer, as a Fusion Block writes its second stream
    for width, heads, grid, b, offset in ((128, 2, (3, 2, 4), 2, 0), (160, 5, (7,), 3, 4)):
        attn = SelfAttention(width, heads).to(dev, torch.bfloat16).eval()
        with torch.no_grad():
            attn.q_norm.weight.uniform_(0.5, 1.5)
            attn.k_norm.weight.uniform_(0.5, 1.5)
        n = 1
        for g in grid:
            n *= g
        pe = rope_nd(grid_positions(grid, device=dev), rope_axes(width // heads, len(grid)))
        pe = torch.cat([torch.zeros(offset, *pe.shape[1:], device=dev), pe])
        x = 3 * torch.randn(b, n, width, device=dev, dtype=torch.bfloat16)
        with torch.no_grad():
            q, k, v = attn.heads_of(x)
            q, k = apply_rope(q, pe[offset:]), apply_rope(k, pe[offset:])
            qk = torch.full((2, b, offset + n, heads, width // heads), 7.0, device=dev,
                            dtype=torch.bfloat16)
            kernels.qk_norm_rope_into(attn.qkv(x), qk, attn.q_norm.weight, attn.k_norm.weight,
                                      pe, offset=offset, eps=attn.q_norm.eps)
        assert (qk[:, :, :offset] == 7).all(), "wrote outside its tokens"
        for got, want in ((qk[0, :, offset:], q), (qk[1, :, offset:], k)):
            got = got.transpose(1, 2).float()
            want = want.float()
            # bf16 values a rounding or two apart, relative to the row's scale (the GPU rounds to
            # nearest, the interpreter truncates; the sums run in another order)
            tol = 2**-6 * want.abs().amax(-1, keepdim=True)
            assert ((got - want).abs() <= tol).all(), (got - want).abs().max().item()
            if dev == "cuda":  # round to nearest as PyTorch does: nearly all bit-identical
                assert (got == want).float().mean() > 0.9
    try:  # a RoPE table shorter than the tokens it must rotate is refused, not read past
        kernels.qk_norm_rope_into(attn.qkv(x), qk, attn.q_norm.weight, attn.k_norm.weight,
                                  pe[:-1], offset=offset, eps=attn.q_norm.eps)
    except ValueError as e:
        assert "too short" in str(e)
    else:
        raise AssertionError("short RoPE table accepted")
    print("ok")
    """
)


def test_qk_norm_rope_kernel_matches_the_pytorch_norm_and_rope():
    env = dict(os.environ)
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        cuda = False
    if not cuda:
        env["TRITON_INTERPRET"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
