"""A toy stage for the training-loop tests: linear regression whose loss must go down.

Run as a script (also under torchrun) so tests can kill it and resume it.
usage: python tests/toy_train.py CKPT_DIR STEPS BATCH OUT.safetensors [SLEEP]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from avlink_cli.training.loop import (
    LoopConfig,
    exit_worker,
    finish_distributed,
    init_distributed,
    rank,
    train,
    under_torchrun,
)

N, DIM = 256, 8


def dataset() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, DIM, generator=g)
    w = torch.randn(DIM, 1, generator=g)
    return x, x @ w


class Toy(nn.Module):
    def __init__(self, sleep: float = 0.0):
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(DIM, 1)
        self.frozen = nn.Linear(DIM, DIM).requires_grad_(False)
        self.sleep = sleep

    def forward(self, batch: dict[str, torch.Tensor], rand) -> torch.Tensor:
        if self.sleep:
            time.sleep(self.sleep)
        noise = 0.01 * rand.normal(1)
        return ((self.lin(batch["x"]) - batch["y"] - noise) ** 2).mean()


def main() -> None:
    ckpt, steps, batch, out = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    sleep = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    device = torch.device("cpu")
    init_distributed(device)
    x, y = dataset()
    module = Toy(sleep)
    cfg = LoopConfig(steps=steps, batch_size=batch, lr=0.05, warmup=1, ckpt_every=1, ema_decay=0.9)
    losses = []
    ema = train(
        module,
        cfg=cfg,
        n_items=N,
        make_batch=lambda idx: {"x": x[idx], "y": y[idx]},
        ckpt_root=ckpt,
        device=device,
        on_step=lambda r: losses.append(r.loss),
    )
    if rank() == 0:
        tensors = {f"ema.{k}": v for k, v in ema.items()}
        tensors |= {f"param.{k}": p.detach().clone() for k, p in module.named_parameters()}
        tensors["losses"] = torch.tensor(losses)
        save_file(tensors, out)
    finish_distributed()


if __name__ == "__main__":
    main()
    if under_torchrun():
        exit_worker(0)
