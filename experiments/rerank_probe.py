"""Would best-of-K dubbing help? Picks, per clip, one of K dubs of the same clips (other seeds) by
how well its onsets fall on the contacts that the Fusion's motion context sees, and compares that
with the oracle pick (by the metric itself) and with a pick by the true contact times.

    for s in 0 1 2 3; do
      avlink dub V -o D$s --seed $s && avlink eval D$s --reference V --mode v2a --json > D$s.json
    done
    python experiments/rerank_probe.py weights/avsynth-s CACHE D0.json D1.json D2.json D3.json

CACHE is a training cache folder of `avlink train` (frames.npy + meta.json with the events): a
linear contact read-out of the frozen MotionContext is fitted on its first 1000 clips (the
read-out of the Fusion stage's contact loss is not saved with the model). Prints the ROC AUC of
the read-out per frame on the dubbed clips, how many true contacts its peaks find, and the mean
onset accuracy of each pick for K = 2..len(runs), split into clips with and without sound.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from contact_probe import auc  # experiments/ is on the path when run as a script

from avlink_cli import flow, media
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens
from avlink_cli.training.data import ClipCache
from avlink_cli.training.run import contact_frames


def context_by_frame(model, frames: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> MotionContext features averaged over each frame's tokens."""
    preset = model.preset
    tok = video_to_tokens(frames, preset.video)
    noise = torch.randn(tok.shape, generator=torch.Generator().manual_seed(seed))
    x = flow.interpolate(noise, tok, torch.full((len(tok),), model.t_cond("v2a")))
    with torch.no_grad():
        c = model.fusion.context_features(x)
    return c.unflatten(1, (preset.n_frames, -1)).mean(2)  # (B, T, W)


def dilate(x: np.ndarray) -> np.ndarray:
    """Largest of each frame and its two neighbours (a contact is judged within +-1 frame)."""
    return np.maximum(x, np.maximum(np.r_[0, x[:-1]], np.r_[x[1:], 0]))


def pick_score(p: np.ndarray, onset_times: list[float], fps: float) -> float:
    """Recall of the read-out's contacts (peaks above 0.5) by the dub's onsets (+-1 frame) plus
    the precision of those onsets (share on a frame the read-out marks)."""
    o = np.zeros(len(p))
    for t in onset_times:
        f = int(round(t * fps))
        if 0 <= f < len(o):
            o[f] = 1
    pd = dilate(p)
    peaks = [f for f in range(len(p)) if p[f] > 0.5 and p[f] == pd[f]]
    recall = float(np.mean([dilate(o)[f] for f in peaks])) if peaks else 1.0
    precision = float((o * (pd > 0.5)).sum() / max(o.sum(), 1))
    return recall + precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("cache", type=Path)
    ap.add_argument("evals", nargs="+", type=Path, help="avlink eval --json of K dubs")
    ap.add_argument("--fit-clips", type=int, default=1000)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(a.model, device=torch.device("cpu")).model.eval()
    preset, fps = model.preset, model.preset.video.fps

    cache = ClipCache.open(a.cache)
    n = min(a.fit_clips, len(cache))
    x = torch.cat(
        [
            context_by_frame(model, torch.from_numpy(np.array(cache.frames[i : min(i + 64, n)])))
            for i in range(0, n, 64)
        ]
    )
    y = torch.from_numpy(contact_frames(cache.events[:n], preset)).float()
    readout = torch.nn.Linear(x.shape[-1], 1)
    opt = torch.optim.Adam(readout.parameters(), 1e-2)
    for _ in range(400):  # full batch; positives weighted as in the contact loss
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            readout(x).squeeze(-1), y, pos_weight=torch.tensor(10.0)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    runs = [{c["name"]: c for c in json.loads(f.read_text())["clips"]} for f in a.evals]
    names = sorted(runs[0])
    probs, labels = {}, []
    for name in names:
        clip = runs[0][name]
        frames = media.read_video(
            clip["reference"], fps=fps, size=(preset.video.height, preset.video.width)
        )[: preset.n_frames]
        with torch.no_grad():
            logit = readout(context_by_frame(model, torch.from_numpy(frames)[None]))[0, :, 0]
        probs[name] = torch.sigmoid(logit).numpy()
        events = json.loads(Path(clip["sidecar"]).read_text())["events"]
        labels.append(contact_frames([events], preset)[0])
    p_all = np.concatenate([probs[k] for k in names])
    print(f"read-out ROC AUC per frame: {auc(p_all, np.concatenate(labels).astype(int)):.3f}")
    found = missed = extra = 0
    for name in names:
        ev, p = np.array(runs[0][name]["event_times"]), probs[name]
        peaks = np.array([f for f in range(len(p)) if p[f] > 0.5 and p[f] == dilate(p)[f]]) / fps
        for t in ev:
            hit = len(peaks) and np.abs(peaks - t).min() <= 1.5 / fps
            found, missed = found + bool(hit), missed + (not hit)
        extra += sum(not (len(ev) and np.abs(ev - t).min() <= 1.5 / fps) for t in peaks)
    print(f"read-out peaks: {found} true contacts found, {missed} missed, {extra} elsewhere")

    acc = np.array([[r[k]["onset_acc"] for k in names] for r in runs])
    sound = np.array([len(runs[0][k]["event_times"]) > 0 for k in names])
    cols = np.arange(len(names))

    def show(label: str, picked: np.ndarray) -> None:
        print(
            f"  {label:28s} {picked.mean():.3f} (sounding {picked[sound].mean():.3f},"
            f" silent {picked[~sound].mean():.3f})"
        )

    truth = {  # the true contact frames, the ceiling of any contact reader
        n: contact_frames([[{"time": t} for t in runs[0][n]["event_times"]]], preset)[0]
        for n in names
    }
    show("each run alone, mean", acc.mean(0))
    for k in range(2, len(runs) + 1):
        print(f"K = {k}")
        by_readout = np.array(
            [[pick_score(probs[n], r[n]["gen_onset_times"], fps) for n in names] for r in runs[:k]]
        )
        show("pick by the read-out", acc[by_readout.argmax(0), cols])
        by_truth = np.array(
            [[pick_score(truth[n].astype(float), r[n]["gen_onset_times"], fps) for n in names]
             for r in runs[:k]]
        )  # fmt: skip
        show("pick by the true contacts", acc[by_truth.argmax(0), cols])
        show("oracle (best by the metric)", acc[:k].max(0))


if __name__ == "__main__":
    main()
