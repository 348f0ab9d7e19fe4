"""Device checks for the inference path (run on a CUDA machine; `--cpu` dry-runs it small).

1. CUDA-graph replay of the velocity call gives the eager result; 2. the sampling loop makes no
host-device synchronisation (torch.cuda.set_sync_debug_mode("error") around flow.sample), with
CFG and with inpainting; 3. longform.dub / animate on the device; 4. `avlink bench` numbers for the
paper and avsynth-s presets: eager, --cuda-graphs, --compile. One JSON line per result.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from avlink_cli import bench, flow, longform, pipeline
from avlink_cli.avlink import AVLink
from avlink_cli.options import Sampling
from avlink_cli.presets import AVSYNTH_S, TINY

CPU = "--cpu" in sys.argv
SPEED = "--speed" in sys.argv  # only the second round: speed of graphs/compile, end to end
DEV = "cpu" if CPU else "cuda"


def out(**kw):
    print(json.dumps(kw), flush=True)


def checked_sample(*a, **k):
    if DEV == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        return ORIG_SAMPLE(*a, **k)
    finally:
        if DEV == "cuda":
            torch.cuda.set_sync_debug_mode(0)


ORIG_SAMPLE = flow.sample
if SPEED:
    import tempfile
    from pathlib import Path

    sys.path.insert(0, "tests")
    from tiny_model import make_model_folder

    for name, direction, batch, extra in [
        ("paper", "v2a", 8, {}),
        ("paper", "v2a", 8, {"cuda_graphs": True}),
        ("avsynth-s", "v2a", 8, {}),
        ("avsynth-s", "v2a", 8, {"cuda_graphs": True}),
        ("avsynth-s", "a2v", 8, {"compile": True, "cuda_graphs": True}),
        ("paper", "v2a", 8, {"compile": True, "cuda_graphs": True}),
        ("paper", "a2v", 8, {"compile": True}),
    ]:
        t0 = time.perf_counter()
        try:
            r = bench.bench_sampling(
                name, device=DEV, batch_size=batch, steps=25, direction=direction, **extra
            )
            out(**r, wall_s=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            out(bench=name, direction=direction, extra=extra, error=repr(e)[:400])
    with tempfile.TemporaryDirectory() as td:
        folder = make_model_folder(Path(td) / "m", AVSYNTH_S, meta={"steps": 25, "cfg": 3.0})
        for graphs in (False, True):
            eng = pipeline.Engine.from_folder(str(folder), device=DEV, cuda_graphs=graphs)
            out(**bench.bench_model(eng, batch_size=8), graphs=graphs)
    sys.exit(0)
preset = TINY if CPU else AVSYNTH_S
torch.manual_seed(0)
with torch.device(DEV):
    model = AVLink(preset)
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * 0.05)
eng = pipeline.Engine(model, device=DEV, dtype=torch.bfloat16 if DEV == "cuda" else torch.float32)
B = 4
(ng, dg), (nc, dc) = eng.token_shape("v2a")
g = torch.Generator().manual_seed(1)
x0, cn, cond = (torch.randn(B, *s, generator=g) for s in ((ng, dg), (nc, dc), (nc, dc)))
known = torch.randn(B, ng, dg, generator=g)
mask = torch.zeros(B, ng, dtype=torch.bool)
mask[:, : ng // 4] = True
kw = dict(x0=x0, cond_noise=cn, prompts=["a ball"] * B, negative_prompts=[""] * B, steps=6, cfg=3.0)
flow.sample = checked_sample
ref = None
try:
    for name, extra in (("cfg", {}), ("inpaint", {"known": known, "known_mask": mask})):
        for graphs in (False, True):
            eng.cuda_graphs = graphs and DEV == "cuda"
            try:
                r = eng.sample("v2a", cond, **kw, **extra)
                out(
                    check=f"no_sync_{name}",
                    graphs=graphs,
                    ok=True,
                    mean=float(r.float().abs().mean()),
                )
                if graphs:
                    diff = float((r - ref).abs().max())
                    out(check=f"graphs_vs_eager_{name}", max_abs_diff=diff, ok=diff < 1e-3)
                ref = r
            except Exception as e:  # noqa: BLE001
                out(check=f"no_sync_{name}", graphs=graphs, ok=False, error=repr(e)[:300])
        if name == "inpaint":
            out(
                check="inpaint_exact",
                ok=bool(
                    (ref[mask.to(ref.device)] == known.to(ref.device)[mask.to(ref.device)]).all()
                ),
            )
finally:
    flow.sample = ORIG_SAMPLE
    eng.cuda_graphs = False

t0 = time.perf_counter()
frames = torch.randint(
    0,
    255,
    (2, int(preset.n_frames * 2.5), preset.video.height, preset.video.width, 3),
    dtype=torch.uint8,
)
wav = longform.dub(eng, frames, Sampling(steps=4))
vid = longform.animate(eng, torch.randn(2, int(preset.n_samples * 1.7)) * 0.1, Sampling(steps=4))
out(
    check="engine_media",
    wav=list(wav.shape),
    frames=list(vid.shape),
    seconds=time.perf_counter() - t0,
)

runs = [
    ("avsynth-s", "v2a", 8, {}),
    ("avsynth-s", "v2a", 8, {"cuda_graphs": True}),
    ("paper", "v2a", 8, {}),
    ("paper", "v2a", 8, {"cuda_graphs": True}),
    ("paper", "a2v", 8, {}),
    ("paper", "a2v", 8, {"cuda_graphs": True}),
    ("paper", "v2a", 1, {}),
    ("paper", "v2a", 8, {"compile": True}),
]
if CPU:
    runs = [("tiny", "v2a", 2, {}), ("tiny", "a2v", 2, {"cuda_graphs": True})]
for name, direction, batch, extra in runs:
    t0 = time.perf_counter()
    try:
        r = bench.bench_sampling(
            name, device=DEV, batch_size=batch, steps=10, direction=direction, repeats=2, **extra
        )
        r["wall_s"] = time.perf_counter() - t0
        out(**r)
    except Exception as e:  # noqa: BLE001
        out(bench=name, direction=direction, extra=extra, error=repr(e)[:400])
