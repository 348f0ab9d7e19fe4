"""avlink bench: analytic FLOPs against torch's counter, the peak table, and the command's output
on the tiny preset (random weights) and on a tiny model folder (end to end)."""

from __future__ import annotations

import json
import types
from dataclasses import replace

import pytest
import torch
from tiny_model import make_model_folder
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from avlink_cli import bench, ops
from avlink_cli.avlink import Ablation, AVLink
from avlink_cli.cli import app
from avlink_cli.presets import TINY

torch.set_num_threads(1)


def math_attention(q, k, v, attn_mask=None):
    """SDPA written as matmuls, which FlopCounterMode counts (its CPU SDPA kernel it does not)."""
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, float("-inf"))
    return s.softmax(-1) @ v


@pytest.mark.parametrize("direction", ["v2a", "a2v"])
@pytest.mark.parametrize("cfg", [True, False])
@pytest.mark.parametrize("reinject, motion", [(True, False), (False, False), (True, True)])
def test_step_flops_match_torch_counter(direction, cfg, reinject, motion, monkeypatch):
    monkeypatch.setattr(
        ops, "F", types.SimpleNamespace(scaled_dot_product_attention=math_attention)
    )
    torch.manual_seed(0)
    preset = TINY.with_(fusion=replace(TINY.fusion, motion=motion))
    model = AVLink(preset, Ablation(reinject_cond=reinject)).eval()
    gen, cnd = ("audio", "video") if direction == "v2a" else ("video", "audio")
    shape = {
        "audio": (TINY.n_audio_tokens, TINY.audio.token_dim),
        "video": (TINY.n_video_tokens, TINY.video.token_dim),
    }
    b = 2
    x, cond = torch.randn(b, *shape[gen]), torch.randn(b, *shape[cnd])
    with torch.inference_mode():
        ctx, neg = model.encode_text(["a"] * b), model.encode_text([""] * b)
        cache = model.prepare_condition(direction, cond, ctx)
        with FlopCounterMode(display=False) as counter:
            if cfg:
                model.velocity_cfg(direction, x, torch.full((b,), 0.5), cache, ctx, neg)
            else:
                model.velocity(direction, x, torch.full((b,), 0.5), cache, ctx)
    flops = bench.step_flops(model, direction, b, cfg=cfg)
    assert flops["total"] == counter.get_total_flops()


def test_peak_table():
    assert bench.gpu_peak("NVIDIA H100 80GB HBM3", torch.bfloat16)[0] == 989
    assert bench.gpu_peak("NVIDIA H200", torch.float16)[0] == 989
    assert bench.gpu_peak("NVIDIA A100-SXM4-80GB", torch.bfloat16)[0] == 312
    assert bench.gpu_peak("NVIDIA H100 PCIe", torch.float32)[0] == 51
    assert bench.gpu_peak("Some GPU", torch.bfloat16)[0] is None


FIELDS = {"ms_per_step", "seconds_per_clip", "realtime_factor", "gflop_per_step"}
FIELDS |= {"achieved_tflops", "peak_tflops", "mfu", "peak_memory_mb"}


def test_bench_command_on_tiny():
    res = CliRunner().invoke(app, ["bench", "--preset", "tiny", "--steps", "2", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert FIELDS <= set(report) and report["device"] == "cpu" and report["steps"] == 2
    assert report["ms_per_step"] > 0 and 0 < report["mfu"] < 1
    res = CliRunner().invoke(
        app, ["bench", "--preset", "tiny", "--steps", "2", "--direction", "a2v", "-b", "2"]
    )
    assert res.exit_code == 0, res.output
    for label in ("ms per step", "seconds per clip", "realtime factor", "mfu", "peak memory mb"):
        assert label in res.stdout


def test_bench_attention_kernel_order():
    before = torch._C._get_sdp_priority_order()
    args = ["bench", "--preset", "tiny", "--steps", "1", "--json", "--sdpa", "cudnn"]
    res = CliRunner().invoke(app, args)  # cuDNN cannot run on a CPU: the next kernel does
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["sdpa"] == "cudnn" and report["ms_per_step"] > 0
    assert report["matmul_tflops"] is None and report["mfu_of_matmul"] is None  # GPUs only
    assert torch._C._get_sdp_priority_order() == before  # the order is restored afterwards
    res = CliRunner().invoke(app, ["bench", "--preset", "tiny", "--sdpa", "fastest"])
    assert res.exit_code == 1 and "unknown --sdpa 'fastest'" in res.output
    assert "Traceback" not in res.output


def test_bench_a_model_folder(tmp_path):
    folder = make_model_folder(tmp_path / "tiny")
    res = CliRunner().invoke(
        app, ["bench", "--model", str(folder), "--steps", "2", "-b", "2", "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    rows = {(r["task"], r["batch_size"]): r for r in report["results"]}
    assert set(rows) == {("dub", 1), ("dub", 2), ("animate", 1), ("animate", 2)}
    assert all(r["seconds_per_clip"] > 0 and r["realtime_factor"] > 0 for r in rows.values())
    assert report["vocoder"] == "GriffinLim" and report["steps"] == {"dub": 2, "animate": 2}
