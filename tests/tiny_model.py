"""A random-init model folder for inference tests (the packaged weights may not exist).

Every parameter, the zero-initialised gates and heads included, gets a small random offset, so
the output depends on the noise, the prompt and the conditioning input (a fresh AV-Link would
output its noise unchanged: zero heads predict zero velocity).
"""

from __future__ import annotations

from pathlib import Path

import torch

from avlink_cli.avlink import AVLink
from avlink_cli.checkpoint import save_model
from avlink_cli.presets import TINY, Preset


def make_model_folder(
    folder: Path, preset: Preset = TINY, *, seed: int = 0, meta: dict | None = None
) -> Path:
    """Save a perturbed random AV-Link of `preset` (no neural vocoder: Griffin-Lim) to `folder`."""
    torch.manual_seed(seed)
    model = AVLink(preset)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_model(folder, model, meta={"steps": 3, "cfg": 2.0, **(meta or {})})
