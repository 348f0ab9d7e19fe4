"""The training loop every stage shares: AdamW, EMA, grad clip, bf16 on CUDA, DDP, resume.

A stage is an `nn.Module` whose `forward(batch, rand)` returns the scalar loss of its local
batch. The loop owns everything else. Reproducibility and exact resume come from one rule: all
randomness of step s (which clips, which noise, which t) is drawn from generators seeded by
(seed, s), for the *global* batch, and each rank keeps its rows. So a run killed at any moment
and resumed from its last checkpoint takes the same steps, and `torchrun --nproc_per_node N`
computes the same global batch as one process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from avlink_cli import shutdown
from avlink_cli.files import set_default_mode
from avlink_cli.manifest import sha256_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    steps: int
    batch_size: int  # global, over all ranks
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 200
    val_every: int = 500
    log_every: int = 10
    seed: int = 0
    time_limit: float | None = None  # seconds; stop early (checkpointed) once exceeded


class Rand:
    """Random draws of one step, for the global batch, sliced to this rank's rows."""

    def __init__(self, seed: int, step: int, *, rank: int, local: int, device: torch.device):
        # draws on the device itself: the same stream on every rank, no host-to-device copies
        self.step = step  # the optimizer step these draws are for (-1: validation)
        self.gen = torch.Generator(device).manual_seed(hash_seed(seed, step, 1))
        self.lo, self.hi = rank * local, (rank + 1) * local
        self.global_size = local * world_size()
        self.device = device

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal, shape (B_local, *shape)."""
        x = torch.randn(self.global_size, *shape, generator=self.gen, device=self.device)
        return x[self.lo : self.hi]

    def uniform(self, *shape: int) -> torch.Tensor:
        x = torch.rand(self.global_size, *shape, generator=self.gen, device=self.device)
        return x[self.lo : self.hi]

    def integers(self, high: int, *shape: int) -> torch.Tensor:
        x = torch.randint(high, (self.global_size, *shape), generator=self.gen, device=self.device)
        return x[self.lo : self.hi]


def hash_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (Python's hash() is salted per process)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def init_distributed(device: torch.device) -> None:
    """Join the torchrun group when launched by torchrun; a no-op for one process."""
    if under_torchrun() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def finish_distributed() -> None:
    """Leave the torchrun group: wait for every rank, then tear the group down. A rank that
    exits with the group still up can be aborted by gloo while its peer is closing."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def under_torchrun() -> bool:
    """Whether this process is one of several that torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_worker(code: int) -> None:
    """End a torchrun worker now, with `code`, once its work is done and saved.

    Even after `finish_distributed`, gloo's threads can abort the process ("terminate called
    without an active exception", SIGABRT) while the interpreter shuts down, which torchrun
    reports as a failed run although every file was written. Under load this happened in 2 of
    10 two-process runs of tests/toy_train.py. Streams and logs are flushed, then the process
    exits without the interpreter's teardown."""
    import logging
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def batch_indices(seed: int, step: int, n_items: int, batch: int) -> torch.Tensor:
    """Global batch of dataset indices for a step: shuffled epochs, deterministic in (seed, step)."""
    per_epoch = max(1, n_items // batch)
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(
        n_items, generator=torch.Generator().manual_seed(hash_seed(seed, epoch, 2))
    )
    return perm[k * batch : (k + 1) * batch] if n_items >= batch else perm.repeat(batch)[:batch]


class EMA:
    """Exponential moving average of the trainable parameters, kept in fp32."""

    def __init__(self, params: dict[str, nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().float().clone() for k, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, nn.Parameter], step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # short runs still average sensibly
        for k, p in params.items():
            self.shadow[k].lerp_(p.detach().float(), 1 - d)


def lr_at(cfg: LoopConfig, step: int) -> float:
    """Linear warmup, then cosine to 10% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# --- checkpoints: safetensors for tensors, JSON for the rest; never pickle --------------------
#
# <root>/ckpt-<step>/ holds state.safetensors and state.json (step, optimizer groups, parameter
# names and the sha256 of state.safetensors); <root>/latest.json names the newest. A save writes
# a hidden folder, fsyncs it and renames it into place, so a crash or power loss leaves the
# previous checkpoints as they were; the last two are kept. A resume takes the newest that
# passes its own checksums and says so when it had to fall back. Checkpoints from before the
# checksums (one kept, no sha256) are read as they are, checked by their safetensors header.

KEEP = 2  # checkpoints kept: the newest, and one to fall back to if the newest is damaged
STATE = "state.safetensors"


class CheckpointError(Exception):
    """A checkpoint folder with nothing to resume from; one line for the user."""


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    params: dict[str, nn.Parameter],
    opt: torch.optim.Optimizer,
    ema: EMA,
) -> None:
    """Write ckpt-<step>/ durably (hidden folder, fsync, rename), point `latest.json` at it,
    and keep the last `KEEP` checkpoints."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    # what saves cut short by a crash left (one writer: rank 0)
    for stale in ckpt_root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in ckpt_root.glob(".latest.json.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = ckpt_root / f".tmp-{step}-{os.getpid()}"
    tmp.mkdir()
    tensors = {f"param.{k}": p.detach().float().contiguous().cpu() for k, p in params.items()}
    tensors |= {f"ema.{k}": v.contiguous().cpu() for k, v in ema.shadow.items()}
    names = list(params)
    sd = opt.state_dict()
    for idx, state in sd["state"].items():
        for key, val in state.items():
            tensors[f"opt.{names[idx]}.{key}"] = torch.as_tensor(val).contiguous().cpu()
    save_file(tensors, tmp / STATE)
    _fsync(tmp / STATE)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    info = {"step": step, "param_groups": groups, "names": names}
    info["sha256"] = {STATE: sha256_file(tmp / STATE)}
    _write_json_durably(tmp / "state.json", info)
    _fsync(tmp)
    final = ckpt_root / f"ckpt-{step:07d}"
    shutil.rmtree(final, ignore_errors=True)  # a damaged one that a resume fell back from
    os.replace(tmp, final)
    _fsync(ckpt_root)
    _write_json_durably(ckpt_root / "latest.json", {"step": step, "path": final.name})
    # newer ones than this are the damaged ones that a resume passed over
    kept = [c for c in _checkpoints(ckpt_root) if _step(c) <= step][:KEEP]
    for old in set(_checkpoints(ckpt_root)) - set(kept):
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    ckpt_root: Path, params: dict[str, nn.Parameter], opt: torch.optim.Optimizer, ema: EMA
) -> int:
    """Restore the newest usable checkpoint; returns its step (0 when there is none).

    A checkpoint that fails its checksums, or cannot be read, is passed over for the one before
    it, with a warning naming the file. CheckpointError when there were checkpoints but none is
    usable: the message names the folder and how to start over.
    """
    found = _checkpoints(ckpt_root)
    if not found and not (ckpt_root / "latest.json").exists():
        return 0
    problems: list[str] = []
    for folder in found:
        try:
            info, tensors = _read_checkpoint(folder, params)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems and rank() == 0:
            log.warning(
                "%s; resuming from the checkpoint before it, %s (step %d)",
                "; ".join(problems),
                folder,
                info["step"],
            )
        _restore(info, tensors, params, opt, ema)
        return int(info["step"])
    why = "; ".join(problems) if problems else "latest.json but no ckpt-* folder"
    raise CheckpointError(
        f"{ckpt_root}: no usable checkpoint to resume from ({why}); "
        f"delete {ckpt_root} to start this stage over"
    )


def _checkpoints(ckpt_root: Path) -> list[Path]:
    """The ckpt-<step> folders, newest first."""
    found = [p for p in ckpt_root.glob("ckpt-*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=_step, reverse=True)


def _step(folder: Path) -> int:
    return int(folder.name[5:])


def _read_checkpoint(
    folder: Path, params: dict[str, nn.Parameter]
) -> tuple[dict, dict[str, torch.Tensor]]:
    """state.json and the tensors of one checkpoint, checked against its own sums and against
    this stage's parameters; CheckpointError names the file that is wrong."""
    try:
        info = json.loads((folder / "state.json").read_text())
        info["step"] = int(info["step"])
        if not (isinstance(info["names"], list) and isinstance(info["param_groups"], list)):
            raise ValueError("names or param_groups is not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{folder / 'state.json'} is unreadable ({_reason(e)})") from None
    for name, digest in (info.get("sha256") or {}).items():  # older checkpoints have none
        try:
            ok = sha256_file(folder / name) == digest
        except OSError as e:
            raise CheckpointError(f"{folder / name} is unreadable ({_reason(e)})") from None
        if not ok:
            raise CheckpointError(
                f"{folder / name} does not match its sha256 in state.json (truncated or corrupt)"
            )
    try:
        tensors = load_file(folder / STATE)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / STATE} is unreadable ({_reason(e)})") from None
    if set(info["names"]) != set(params):
        raise CheckpointError(f"{folder}: its parameters do not match this stage's")
    if missing := [k for k in params if f"param.{k}" not in tensors or f"ema.{k}" not in tensors]:
        raise CheckpointError(f"{folder / STATE} lacks the tensors of {missing[0]!r}")
    return info, tensors


def _restore(
    info: dict,
    tensors: dict[str, torch.Tensor],
    params: dict[str, nn.Parameter],
    opt: torch.optim.Optimizer,
    ema: EMA,
) -> None:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[f"param.{k}"].to(p.dtype))
            ema.shadow[k].copy_(tensors[f"ema.{k}"])
    state: dict[int, dict[str, torch.Tensor]] = {}
    for idx, k in enumerate(info["names"]):
        entries = {
            key.rsplit(".", 1)[1]: t for key, t in tensors.items() if key.startswith(f"opt.{k}.")
        }
        if entries:
            state[idx] = entries
    groups = [dict(g, params=list(range(len(params)))) for g in info["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _reason(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk (folders: where the OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _write_json_durably(path: Path, data: object) -> None:
    """JSON to a hidden temporary file, fsynced, renamed over `path`, the folder fsynced."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class StepReport:
    step: int
    loss: float
    lr: float
    samples_per_s: float
    val_loss: float | None = None


def train(
    module: nn.Module,
    *,
    cfg: LoopConfig,
    n_items: int,
    make_batch: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    ckpt_root: Path,
    device: torch.device,
    val_batch: dict[str, torch.Tensor] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Run `cfg.steps` optimizer steps of `module` (loss = module(batch, rand)), resuming from
    `ckpt_root` when it holds a checkpoint. Returns the EMA weights of the trainable parameters.

    `make_batch(indices)` returns this rank's batch for the global dataset indices it is given.
    """
    ws, rk = world_size(), rank()
    if cfg.batch_size % ws:
        raise ValueError(f"batch size {cfg.batch_size} is not divisible by {ws} processes")
    local = cfg.batch_size // ws
    params = {k: p for k, p in module.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    opt = torch.optim.AdamW(
        list(params.values()), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    ema = EMA(params, cfg.ema_decay)
    start = load_checkpoint(ckpt_root, params, opt, ema)
    if start:
        log.info("resuming from step %d", start)
    net = module
    if ws > 1:
        net = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    module.train()
    t_last, n_since = time.perf_counter(), 0
    t_start = t_last
    for step in range(start, cfg.steps):
        shutdown.check()  # a SIGTERM that Python dropped stops here (avlink_cli.shutdown)
        if cfg.time_limit is not None and _out_of_time(
            time.perf_counter() - t_start > cfg.time_limit, device
        ):
            if rk == 0 and step > start:
                save_checkpoint(ckpt_root, step, params, opt, ema)
            log.warning(
                "time limit of %.0f s reached: stopping at step %d of %d",
                cfg.time_limit,
                step,
                cfg.steps,
            )
            break
        idx = batch_indices(cfg.seed, step, n_items, cfg.batch_size)[rk * local : (rk + 1) * local]
        batch = {k: v.to(device, non_blocking=True) for k, v in make_batch(idx).items()}
        rand = Rand(cfg.seed, step, rank=rk, local=local, device=device)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        with autocast:
            loss = net(batch, rand)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.grad_clip)
        opt.step()
        ema.update(params, step)
        n_since += cfg.batch_size
        done = step + 1
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            if rk == 0:
                save_checkpoint(ckpt_root, done, params, opt, ema)
            if ws > 1:
                dist.barrier()
        if on_step and (done % cfg.log_every == 0 or done == cfg.steps or done == start + 1):
            now = time.perf_counter()
            val = None
            if val_batch is not None and (done % cfg.val_every == 0 or done == cfg.steps):
                val = validate(module, val_batch, cfg.seed, device)
            report = StepReport(
                done, _mean_over_ranks(loss), lr_at(cfg, step), n_since / (now - t_last), val
            )
            t_last, n_since = now, 0
            on_step(report)
    return {k: v.clone() for k, v in ema.shadow.items()}


def _out_of_time(mine: bool, device: torch.device) -> bool:
    """Whether any rank ran out of time (all ranks must stop at the same step)."""
    if world_size() == 1:
        return mine
    flag = torch.tensor([float(mine)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@torch.no_grad()
def validate(
    module: nn.Module, batch: dict[str, torch.Tensor], seed: int, device: torch.device
) -> float:
    """Loss on a fixed validation batch with fixed noise (same draws every time)."""
    was = module.training
    module.eval()
    n = next(iter(batch.values())).shape[0]
    rand = Rand(seed, -1, rank=0, local=n, device=device)
    rand.global_size = n
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = module({k: v.to(device) for k, v in batch.items()}, rand)
    module.train(was)
    return float(loss)


def _mean_over_ranks(loss: torch.Tensor) -> float:
    x = loss.detach().float()
    if world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= world_size()
    return float(x)
