"""The GPU table of issue 7: `avlink bench` of the paper preset (random weights, bf16, 25 steps with
CFG), V2A and A2V, eager and compiled, batch 1 and 16, plus the speed options (CUDA graphs, the
cuDNN attention kernels). One JSON line per run on stdout, in the order run.

    python experiments/bench_table.py            # every row, in one process, one after another
    python experiments/bench_table.py --warm     # compile each compiled row for 1 step only (fills
                                             # inductor's on-disk cache; run beside other work)
    python experiments/bench_table.py --only 4,5 # rows 4 and 5 only (0-based, in ROWS order)
    python experiments/bench_table.py --sdpa cudnn   # every row with this attention kernel order
    python experiments/bench_table.py --print-table FILE.jsonl   # the README's markdown table
"""

from __future__ import annotations

import json
import sys
import time

ROWS = [  # (direction, batch, compile, cuda_graphs, sdpa)
    ("v2a", 1, False, False, "auto"),
    ("v2a", 16, False, False, "auto"),
    ("a2v", 1, False, False, "auto"),
    ("a2v", 16, False, False, "auto"),
    ("v2a", 1, True, False, "auto"),
    ("v2a", 16, True, False, "auto"),
    ("a2v", 1, True, False, "auto"),
    ("a2v", 16, True, False, "auto"),
    ("v2a", 1, True, True, "auto"),
    ("v2a", 16, True, False, "cudnn"),
    ("a2v", 16, True, False, "cudnn"),
    ("v2a", 1, True, True, "cudnn"),
]


def print_table(path: str) -> None:
    print(
        "| direction | batch | mode | ms/step | s/clip | TFLOP/s | MFU (spec) | MFU (matmul) | memory |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for line in open(path):
        r = json.loads(line)
        if "error" in r:
            print(
                f"| {r['direction']} | {r['batch_size']} | {r['mode']} | failed: {r['error'][:60]} |"
            )
            continue
        print(
            f"| {r['direction'].upper()} | {r['batch_size']} | {r['mode']} | {r['ms_per_step']:.1f} "
            f"| {r['seconds_per_clip']:.3f} | {r['achieved_tflops']:.0f} | {100 * r['mfu']:.0f}% "
            f"| {100 * r['mfu_of_matmul']:.0f}% | {r['peak_memory_mb'] / 1024:.1f} GB |"
        )


def main() -> None:
    if "--print-table" in sys.argv:
        print_table(sys.argv[sys.argv.index("--print-table") + 1])
        return
    import torch

    from avlink_cli import bench

    warm = "--warm" in sys.argv
    only = (
        {int(i) for i in sys.argv[sys.argv.index("--only") + 1].split(",")}
        if "--only" in sys.argv
        else set(range(len(ROWS)))
    )
    # one kernel order for every row; run it in a process with its own TORCHINDUCTOR_CACHE_DIR, so
    # that no compiled graph traced under another order is taken from the on-disk caches
    forced = sys.argv[sys.argv.index("--sdpa") + 1] if "--sdpa" in sys.argv else None
    for i, (direction, batch, compiled, graphs, sdpa) in enumerate(ROWS):
        if i not in only or (warm and not compiled):
            continue
        sdpa = forced or sdpa
        mode = "compiled" if compiled else "eager"
        mode += " + CUDA graphs" if graphs else ""
        mode += f", sdpa {sdpa}" if sdpa != "auto" else ""
        t0 = time.perf_counter()
        try:
            r = bench.bench_sampling(
                "paper",
                device="cuda",
                dtype="bfloat16",
                batch_size=batch,
                steps=1 if warm else 25,
                direction=direction,
                cfg=3.0,
                compile=compiled,
                cuda_graphs=graphs,
                sdpa=sdpa,
            )
            r |= {"mode": mode, "wall_s": round(time.perf_counter() - t0, 1)}
        except Exception as e:  # noqa: BLE001 - one failed row must not lose the others
            r = {"direction": direction, "batch_size": batch, "mode": mode, "error": repr(e)[:500]}
        print(json.dumps(r), flush=True)
        torch._dynamo.reset()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
