"""Model folders for the Fusion-stage ablations (issue 6): one per variant, each holding the base
folder's frozen backbones (audio DiT, video DiT, text encoder, vocoder) and no Fusion weights, so
`avlink train fusion --out DIR/VARIANT` starts every variant from the same fresh init.

    python experiments/fusion_variants.py weights/avsynth-s /tmp/variants
    for v in default no-reinject rope-index uniform-t external; do
      avlink train fusion --out /tmp/variants/$v --steps 1200 --batch-size 64 --lr 1e-3 ...
    done
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from avlink_cli.avlink import Ablation, AVLink
from avlink_cli.checkpoint import load_model, save_model
from avlink_cli.train_commands import ABLATIONS

# the published design, then one variant per `avlink train --ablation` switch
VARIANTS = {"default": Ablation()} | {
    flag: Ablation(**{field: value}) for flag, (field, value) in ABLATIONS.items()
}
BACKBONES = ["audio_dit", "video_dit", "text"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="model folder with trained backbones")
    ap.add_argument("out", type=Path, help="one subfolder per variant is written here")
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument(
        "--motion",
        choices=["on", "off"],
        help="turn the Fusion Blocks' motion path on or off (default: as in the base folder)",
    )
    ap.add_argument("--motion-context", type=int, metavar="W", help="motion-context width")
    ap.add_argument(
        "--keep-fusion",
        action="store_true",
        help="carry the base folder's Fusion weights over (new parts start at their init)",
    )
    a = ap.parse_args()
    base = load_model(a.base, device="cpu")
    preset = base.model.preset
    if a.motion is not None:
        preset = preset.with_(fusion=replace(preset.fusion, motion=a.motion == "on"))
    if a.motion_context is not None:
        preset = preset.with_(fusion=replace(preset.fusion, motion_context=a.motion_context))
    for name in a.variants:
        torch.manual_seed(0)  # the same fresh Fusion init for every variant
        model = AVLink(preset, VARIANTS[name])
        for part in BACKBONES:
            getattr(model, part).load_state_dict(getattr(base.model, part).state_dict())
        parts = BACKBONES + (["vocoder"] if base.vocoder is not None else [])
        if a.keep_fusion:
            missing, unexpected = model.fusion.load_state_dict(
                base.model.fusion.state_dict(), strict=False
            )
            if unexpected or any(
                ".context" not in k and not k.startswith("context.") for k in missing
            ):
                raise SystemExit(f"the base Fusion does not fit: {missing=} {unexpected=}")
            parts.append("fusion")
        folder = a.out / name
        save_model(folder, model, vocoder=base.vocoder, components=parts, meta=base.meta)
        print(f"{folder}: {VARIANTS[name]}")


if __name__ == "__main__":
    main()
