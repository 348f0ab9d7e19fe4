"""Throughput check: ``python -m avlink_cli.synth OUT_DIR [--count N] [--workers W] [--format F]``.

Writes clips 0..N-1 of the train split into OUT_DIR (overwriting) and prints clips per second.
The user-facing command is ``avlink synth``; this exists to measure the generator alone.
"""

from __future__ import annotations

import argparse
import json

from avlink_cli.synth.dataset import FORMATS, benchmark


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m avlink_cli.synth", description=__doc__)
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--format", choices=FORMATS, default="mp4")
    ap.add_argument("--preset", default="avsynth-s")
    a = ap.parse_args()
    r = benchmark(a.out_dir, count=a.count, workers=a.workers, fmt=a.format, preset=a.preset)
    print(json.dumps({**r, "format": a.format, "preset": a.preset}))


if __name__ == "__main__":
    main()
