"""The ablation table (issue 6) from `scripts/eval_default.sh` work folders, as markdown.

    python experiments/ablation_table.py NAME=WORKDIR [NAME=WORKDIR ...]

Each WORKDIR holds the v2a.json and a2v.json that `eval_default.sh MODEL COUNT WORKDIR` wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> None:
    rows = [arg.split("=", 1) for arg in sys.argv[1:]]
    if not rows or any(len(r) != 2 for r in rows):
        sys.exit(__doc__)
    print(
        "| variant | V2A onset acc | V2A onset AP | V2A median timing error | BT.1359 share "
        "| A2V events matched (±1 frame) | chance | AV-Align |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, work in rows:
        v = json.loads((Path(work) / "v2a.json").read_text())["summary"]
        a = json.loads((Path(work) / "a2v.json").read_text())["summary"]
        print(
            f"| {name} | {v['onset_acc']:.3f} | {v['onset_ap']:.3f} | {v['timing_median_ms']:.0f} ms "
            f"| {100 * v['timing_bt1359_share']:.0f}% | {100 * a['match_share']:.1f}% "
            f"| {100 * a['match_chance']:.1f}% | {a['av_align']:.3f} |"
        )


if __name__ == "__main__":
    main()
