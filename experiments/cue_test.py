"""Can the Fusion stage learn V2A timing on AVSynth audio, and is the video what stops it?

Trains a fresh Fusion (V2A only, batch 16, t_shift as FusionStage) on the frozen backbones of
MODEL and prints, every 100 steps, the validation loss with each clip's own video ("matched")
against another clip's ("shuffled"), as experiments/cond_gap.py does (48 clips, t 0.05/0.2/0.5).

    python experiments/cue_test.py weights/avsynth-s --video real          # the real frames
    python experiments/cue_test.py weights/avsynth-s --video flash         # contact frames made white
    python experiments/cue_test.py weights/avsynth-s --video real --motion on
    python experiments/cue_test.py weights/avsynth-s --video fade --motion on   # flash fading out
    python experiments/cue_test.py weights/avsynth-s --video real --motion on --contact-loss 0.1

--video flash replaces every frame nearest a true contact by a white frame: the audio is real,
only the visual cue is made obvious. A gap there and none with the real frames means the audio
side can use timing and the video representation is what hides it. --video fade trains with
the flash fading linearly from full to nothing over the first 60% of the steps (a hint that uses
the true contact times, for this experiment only); its gap is always measured on real frames. --contact-loss W adds the Fusion stage's auxiliary
contact loss (training/stages.py ContactHead, on the real frames' motion terms) times W.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch
from cond_gap import gap_losses  # experiments/, beside this file

from avlink_cli import flow
from avlink_cli.checkpoint import load_model
from avlink_cli.codecs import video_to_tokens, wav_to_tokens
from avlink_cli.fusion import Fusion
from avlink_cli.synth import render_clip
from avlink_cli.training.run import contact_frames
from avlink_cli.training.stages import ContactHead, frame_group_labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--video", choices=["real", "flash", "fade"], default="real")
    ap.add_argument("--motion", choices=["on", "off"], help="default: as in the model folder")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--clips", type=int, default=1024, help="training clips")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--t-shift", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--contact-loss", type=float, default=0.0, help="weight of the contact loss")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = load_model(a.model).model
    p = m.preset
    cfg = p.fusion if a.motion is None else replace(p.fusion, motion=a.motion == "on")
    torch.manual_seed(0)
    m.fusion = Fusion.for_preset(p, cfg)
    params = m.set_trainable("fusion")
    head = None
    if a.contact_loss > 0:
        if not cfg.motion:
            raise SystemExit("--contact-loss reads the motion path: use --motion on")
        torch.manual_seed(0)
        head = ContactHead(cfg.blocks, cfg.width, p.video.tokens_per_frame_group)
        params = params + list(head.parameters())

    def data(split: str, n: int) -> tuple[torch.Tensor, ...]:
        """Audio tokens, real video tokens, video tokens with every contact frame white, and the
        contact labels of each frame group."""
        clips = [render_clip(p, seed=i, split=split) for i in range(n)]
        frames = np.stack([c.frames for c in clips])
        flashed = frames.copy()
        contacts = contact_frames([c.sidecar["events"] for c in clips], p)
        flashed[contacts] = 255
        wav = torch.from_numpy(np.stack([c.audio for c in clips]))
        audio = wav_to_tokens(wav, p.audio)[:, : p.n_audio_tokens]
        real, flash = (video_to_tokens(torch.from_numpy(f), p.video) for f in (frames, flashed))
        labels = frame_group_labels(torch.from_numpy(contacts), p.video.patch[0])
        return audio, real, flash, labels

    audio, real, flash, labels = data("train", a.clips)
    val_audio, val_real, val_flash, _ = data("val", 48)
    val_video = val_flash if a.video == "flash" else val_real
    val_ctx = m.encode_text([""] * 48)

    def gap() -> dict[str, float]:
        with torch.no_grad():
            gaps = gap_losses(m, "v2a", val_audio, val_video, val_ctx)
        out = {name: round(v["flow"], 5) for name, v in gaps.items()}
        return out | {"matched_over_shuffled": round(out["matched"] / out["shuffled"], 4)}

    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    batch = 16
    ctx = m.encode_text([""] * batch)
    start, aux_sum = time.time(), 0.0
    print(json.dumps({"step": 0} | gap()), flush=True)
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(audio), (batch,), generator=g)
        # tokens are linear in the pixels, so mixing tokens mixes the frames
        hint = {"real": 0.0, "flash": 1.0}.get(a.video, max(0.0, 1 - step / (0.6 * a.steps)))
        x1, cond = audio[idx], real[idx] + hint * (flash[idx] - real[idx])
        t = flow.shift_time(torch.sigmoid(torch.randn(batch, generator=g)), a.t_shift)
        x0 = torch.randn(x1.shape, generator=g)
        cond_noise = torch.randn(cond.shape, generator=g)
        cache = m.prepare_condition("v2a", cond, ctx, noise=cond_noise)
        loss = flow.loss(m.velocity("v2a", flow.interpolate(x0, x1, t), t, cache, ctx), x0, x1)
        if head is not None:  # on the real frames, as FusionStage does
            x_t = flow.interpolate(cond_noise, real[idx], cache.t_cond)
            aux = head.loss(m.fusion.motion_terms(x_t), labels[idx], pos_weight=10.0)
            loss = loss + a.contact_loss * aux
            aux_sum += aux.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            extra = {"contact_loss": round(aux_sum / 100, 4)} if head is not None else {}
            aux_sum = 0.0
            print(json.dumps({"step": step, "seconds": round(time.time() - start)} | gap() | extra),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
