"""An animate output beside the true render of the same sound, as one PNG contact sheet.

usage: python scripts/a2v_sheet.py GENERATED.mp4 TRUE.mp4 -o sheet.png [--columns 12] [--scale 4]

Rows: the true render, then the generated video, both decoded at the true render's size and
fps; columns: frames evenly spaced over the clip. A red bar above a column marks a frame within
one frame of an onset of the generated file's own sound (what the video should hit on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from avlink_cli import media, metrics, onsets
from avlink_cli.plots import encode_png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("generated", type=Path)
    ap.add_argument("true", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--columns", type=int, default=12)
    ap.add_argument("--scale", type=int, default=4)
    a = ap.parse_args()
    info = media.probe(a.true)
    fps, hw = float(info.fps), info.display_hw
    true = media.read_video(a.true, fps=fps, size=hw)
    gen = media.read_video(a.generated, fps=fps, size=hw)
    n = min(len(true), len(gen))
    cols = np.linspace(0, n - 1, a.columns).round().astype(int)
    wav = media.read_audio(a.generated, sample_rate=onsets.SAMPLE_RATE).astype(np.float64)
    hits = metrics.refine_onsets(wav, onsets.onset_detect(wav) * onsets.HOP)
    hit_frames = np.round(np.asarray(hits) * fps).astype(int)
    s, gap = a.scale, 2
    tile_h, tile_w = hw[0] * s, hw[1] * s
    img = np.full((6 + 2 * (tile_h + gap), len(cols) * (tile_w + gap), 3), 30, np.uint8)
    for j, k in enumerate(cols):
        x = j * (tile_w + gap)
        if len(hit_frames) and np.abs(hit_frames - k).min() <= 1:
            img[1:5, x : x + tile_w] = (220, 40, 40)
        for i, clip in enumerate((true, gen)):
            y = 6 + i * (tile_h + gap)
            img[y : y + tile_h, x : x + tile_w] = np.kron(clip[k], np.ones((s, s, 1), np.uint8))
    a.out.write_bytes(encode_png(img))
    print(
        f"{a.out}: frames {cols.tolist()} at {fps:g} fps; onsets at {np.round(hits, 2).tolist()} s"
    )


if __name__ == "__main__":
    main()
