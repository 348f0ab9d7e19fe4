"""`avlink train STAGE`: one stage of the pipeline into one model folder.

Stages, in order: vocoder, audio (audio DiT + text encoder), video (video DiT), fusion. Each
reads the model folder as the earlier stages left it (absent components start fresh), trains
with the shared loop (checkpoints under `<out>/.train/<stage>/`, resumable), and writes its
components into the folder (EMA weights) with the manifest; the folder is usable after `fusion`.

Data: AVSynth (`avsynth`, rendered once into a cache of arrays) or a folder of real videos with
sound. Caches live under `cache_dir` keyed by source, preset and size, built once by rank 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from avlink_cli.avlink import Ablation, AVLink
from avlink_cli.checkpoint import load_model, save_model
from avlink_cli.codecs import log_mel
from avlink_cli.codecs.vocoder import GriffinLim, NeuralVocoder
from avlink_cli.presets import Preset
from avlink_cli.text import tokenize
from avlink_cli.training import data as D
from avlink_cli.training.loop import (
    LoopConfig,
    StepReport,
    init_distributed,
    rank,
    train,
    world_size,
)
from avlink_cli.training.stages import FusionStage, GeneratorStage, VocoderStage, mrstft_loss

log = logging.getLogger(__name__)

STAGES = ("vocoder", "audio", "video", "fusion")


@dataclass(frozen=True)
class DataSpec:
    source: str  # "avsynth" or a folder of videos
    train_count: int = 2000  # AVSynth clips (a video folder gives what it has, up to this)
    val_count: int = 64
    seed: int = 0

    def key(self, preset: Preset, split: str) -> str:
        src = self.source if self.source == "avsynth" else str(Path(self.source).resolve())
        n = self.train_count if split == "train" else self.val_count
        raw = json.dumps([src, preset.to_dict(), split, n, self.seed], sort_keys=True)
        return f"{preset.name}-{split}-{hashlib.sha256(raw.encode()).hexdigest()[:12]}"


def _render(job: tuple[Preset, str, int]) -> D.ClipArrays:
    from avlink_cli.synth import render_clip

    preset, split, seed = job
    clip = render_clip(preset, seed=seed, split=split)
    return D.ClipArrays(clip.frames, clip.audio, clip.sidecar["caption"], clip.sidecar["events"])


def ensure_cache(
    spec: DataSpec,
    preset: Preset,
    split: str,
    cache_dir: Path,
    *,
    workers: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
) -> D.ClipCache:
    """Open the cache for (source, preset, split), building it first when absent (rank 0 only)."""
    root = Path(cache_dir) / spec.key(preset, split)
    if rank() == 0 and not (root / "meta.json").is_file():
        n = spec.train_count if split == "train" else spec.val_count
        tick = (lambda i: progress(f"caching {split}", i, n)) if progress else None
        if spec.source == "avsynth":
            jobs = [(preset, split, spec.seed + i) for i in range(n)]
            if workers > 1:
                with mp.get_context("spawn").Pool(workers) as pool:
                    D.build_cache(
                        root,
                        preset,
                        pool.imap(_render, jobs, chunksize=8),
                        n,
                        source="avsynth",
                        progress=tick,
                    )
            else:
                D.build_cache(root, preset, map(_render, jobs), n, source="avsynth", progress=tick)
        else:
            folder = Path(spec.source)
            total = D.count_video_windows(folder, preset)
            if split == "val":  # the last windows of the folder, kept out of training
                n = min(n, max(1, total // 10))
                clips = (
                    c for i, c in enumerate(D.video_folder_clips(folder, preset)) if i >= total - n
                )
            else:
                n = min(n, total - min(spec.val_count, max(1, total // 10)) if total > 1 else total)
                clips = D.video_folder_clips(folder, preset)
            if n <= 0:
                raise ValueError(
                    f"{folder}: no videos with sound of at least {preset.duration:g} s"
                )
            D.build_cache(root, preset, clips, n, source=str(folder), progress=tick)
        _add_mels(root, preset)
    if world_size() > 1:
        dist.barrier()
    return D.ClipCache.open(root)


def _add_mels(root: Path, preset: Preset) -> None:
    """mel.npy (N, n_mels, F) float16: the normalised log-mel of every clip, computed once."""
    wav = np.load(root / "wav.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(
        root / "mel.tmp.npy", "w+", np.float16, (len(wav), preset.audio.n_mels, preset.n_mel_frames)
    )
    for lo in range(0, len(wav), 64):
        w = torch.from_numpy(np.array(wav[lo : lo + 64]))
        out[lo : lo + 64] = log_mel(w, preset.audio)[..., : preset.n_mel_frames].numpy()
    out.flush()
    del out
    (root / "mel.tmp.npy").replace(root / "mel.npy")


def contact_frames(events_per_clip: list[list[dict]], preset: Preset) -> np.ndarray:
    """(N, T) bool: the frame nearest each known contact of each clip (none for real videos)."""
    out = np.zeros((len(events_per_clip), preset.n_frames), dtype=bool)
    for i, events in enumerate(events_per_clip):
        for e in events:
            out[i, min(max(round(e["time"] * preset.video.fps), 0), preset.n_frames - 1)] = True
    return out


class Batches:
    """Tensors for a list of dataset indices, from a cache opened with memory maps.

    With `preload` (used on CUDA) the arrays are copied to the device once, so a step's batch
    is a gather on the GPU instead of a host-to-device copy.
    """

    def __init__(
        self,
        cache: D.ClipCache,
        preset: Preset,
        *,
        need_wav: bool = False,
        preload: torch.device | None = None,
    ):
        mel = np.load(cache.root / "mel.npy", mmap_mode="r")
        ids, mask = tokenize(cache.captions, preset.text.max_tokens)
        arrays = {
            "frames": cache.frames,
            "mel": mel,
            "contacts": contact_frames(cache.events, preset),
        }
        arrays |= {"wav": cache.wav} if need_wav else {}
        self.host = arrays if preload is None else {}
        self.device = (
            {k: torch.from_numpy(np.asarray(v)).to(preload) for k, v in arrays.items()}
            if preload
            else {}
        )
        self.text = {"ids": ids, "mask": mask}
        if preload is not None:
            self.text = {k: v.to(preload) for k, v in self.text.items()}

    def __call__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {k: torch.from_numpy(np.array(v[idx.numpy()])) for k, v in self.host.items()}
        out |= {k: v[idx.to(v.device)] for k, v in self.device.items()}
        return out | {k: v[idx.to(v.device)] for k, v in self.text.items()}


def open_model(
    out: Path, preset: Preset, ablation: Ablation, device: torch.device
) -> tuple[AVLink, NeuralVocoder]:
    """The model as earlier stages left it in `out` (absent components fresh), plus a vocoder."""
    if (out / "model.json").is_file():
        loaded = load_model(out, device=device, allow_partial=True)
        model = loaded.model
        if model.preset != preset or model.ablation != ablation:
            raise ValueError(f"{out}: holds a model of another preset or ablation; use a new --out")
        vocoder = loaded.vocoder or NeuralVocoder(preset.vocoder, preset.audio).to(device)
    else:
        torch.manual_seed(0)
        model = AVLink(preset, ablation).to(device)
        vocoder = NeuralVocoder(preset.vocoder, preset.audio).to(device)
    return model, vocoder


DEFAULT_CONTACT_LOSS = 0.1  # weight of FusionStage's contact loss where the motion path is on


def default_contact_loss(preset: Preset) -> float:
    """The Fusion stage's contact-loss weight when none is given: on with the motion path (the
    loss reads it), off without (the paper's design has nothing for it to train)."""
    return DEFAULT_CONTACT_LOSS if preset.fusion.motion else 0.0


def train_stage(
    stage: str,
    *,
    preset: Preset,
    out: Path,
    data: DataSpec,
    cache_dir: Path,
    loop: LoopConfig,
    device: torch.device,
    ablation: Ablation = Ablation(),
    contact_hint: float = 0.0,
    contact_loss: float | None = None,
    onset_weight: float = 0.0,
    silent_weight: float = 0.0,
    workers: int = 2,
    on_step: Callable[[StepReport], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Train one stage and write its components into `out`; returns a summary dict."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    init_distributed(device)
    out = Path(out)
    train_cache = ensure_cache(data, preset, "train", cache_dir, workers=workers, progress=progress)
    val_cache = ensure_cache(
        replace(data, seed=data.seed), preset, "val", cache_dir, workers=workers, progress=progress
    )
    model, vocoder = open_model(out, preset, ablation, device)
    model.set_trainable()  # freeze all, then open what the stage trains
    vocoder.requires_grad_(False)
    if stage == "vocoder":
        vocoder.requires_grad_(True)
        module, components = VocoderStage(vocoder, preset.audio), ["vocoder"]
    elif stage == "audio":
        model.set_trainable("audio_dit", "text")
        module, components = GeneratorStage(model, "audio"), ["audio_dit", "text"]
    elif stage == "video":
        model.set_trainable("video_dit")
        module, components = GeneratorStage(model, "video"), ["video_dit"]
    else:
        model.set_trainable("fusion", "external")
        module, components = (
            FusionStage(
                model,
                hint_steps=round(contact_hint * loop.steps),
                contact_weight=default_contact_loss(preset)
                if contact_loss is None
                else contact_loss,
                onset_weight=onset_weight,
                silent_weight=silent_weight,
            ),
            ["fusion"] + (["external"] if model.external is not None else []),
        )
    preload = device if device.type == "cuda" else None
    make_batch = Batches(train_cache, preset, need_wav=stage == "vocoder", preload=preload)
    val_batches = Batches(val_cache, preset, need_wav=stage == "vocoder")
    val_batch = val_batches(torch.arange(min(len(val_cache), 32)))
    from avlink_cli.training.loop import validate

    val_start = validate(module, val_batch, loop.seed, device)
    t0 = time.perf_counter()
    ema = train(
        module,
        cfg=loop,
        n_items=len(train_cache),
        make_batch=make_batch,
        ckpt_root=out / ".train" / stage,
        device=device,
        val_batch=val_batch,
        on_step=on_step,
    )
    params = dict(module.named_parameters())
    with torch.no_grad():
        for k, v in ema.items():
            params[k].copy_(v.to(params[k].dtype))
    latest = out / ".train" / stage / "latest.json"
    steps_done = json.loads(latest.read_text())["step"] if latest.is_file() else 0
    summary: dict = {
        "stage": stage,
        "steps": steps_done,
        "batch_size": loop.batch_size,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    module.eval()
    summary["val_loss_start"] = round(val_start, 5)
    summary["val_loss"] = round(validate(module, val_batch, loop.seed, device), 5)
    if stage == "vocoder":
        summary |= vocoder_report(vocoder, val_batch["wav"].to(device), preset)
    if rank() == 0:
        meta = {f"train_{stage}": summary}
        save_model(
            out,
            model,
            vocoder=vocoder if stage == "vocoder" or _has(out, "vocoder") else None,
            components=components,
            meta=meta,
        )
    if world_size() > 1:  # the next stage's ranks load what rank 0 has just written
        dist.barrier()
    return summary


def _has(out: Path, component: str) -> bool:
    return (out / f"{component}.safetensors").is_file()


@torch.no_grad()
def vocoder_report(vocoder: NeuralVocoder, wav: torch.Tensor, preset: Preset) -> dict:
    """Multi-resolution STFT distance of the neural vocoder and of Griffin-Lim on the same clips."""
    wav = wav[:8]
    mel = log_mel(wav, preset.audio)
    n = mel.shape[-1] * preset.audio.hop
    neural = mrstft_loss(vocoder(mel)[:, :n], wav[:, :n])
    gl = mrstft_loss(GriffinLim(preset.audio)(mel.cpu()).to(wav.device)[:, :n], wav[:, :n])
    return {"mrstft_neural": round(float(neural), 4), "mrstft_griffin_lim": round(float(gl), 4)}
