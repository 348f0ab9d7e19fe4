"""Model folders: save and strictly load an AV-Link model (+ neural vocoder) as safetensors.

A folder holds `model.json` (format, preset, ablation, per-component config and parameter count,
free-form `meta`), one `<component>.safetensors` per component (video_dit, audio_dit, text,
fusion, optionally external and vocoder) and `manifest.json` with the sha256 of every other file.
Writes go to a temporary file and are renamed into place; the manifest is written last, so a
crash mid-save leaves a folder that fails verification rather than one that loads wrong weights.

Training writes stage by stage (vocoder, audio DiT + text, video DiT, Fusion): `save_model(...,
components=[...])` writes the named components and keeps the ones already in the folder when the
preset and ablation match. `load_model` refuses a folder that lacks a model component unless
`allow_partial=True`; then absent components are freshly initialised and `LoadedModel.missing`
names them (the vocoder is optional: Griffin-Lim stands in). Never pickle, never `torch.load`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .avlink import Ablation, AVLink
from .codecs.vocoder import NeuralVocoder
from .files import set_default_mode
from .manifest import ManifestError, read_manifest, verify_folder, write_json_atomic, write_manifest
from .presets import Preset

FORMAT = 1
MODEL_JSON = "model.json"
MODEL_COMPONENTS = ("video_dit", "audio_dit", "text", "fusion")  # external only with the ablation


class ModelFolderError(Exception):
    """A model folder that cannot be loaded as it is; the message names the file or key."""


class IntegrityError(ModelFolderError, ManifestError):
    """A file does not match the manifest (missing, truncated, a flipped byte)."""


class StateDictError(ModelFolderError):
    """A component's tensors do not fit the architecture: missing or extra key, wrong shape."""


class IncompleteModelError(ModelFolderError):
    """A component the model needs is absent (a partially trained folder)."""


@dataclass
class LoadedModel:
    model: AVLink
    vocoder: NeuralVocoder | None
    loaded: tuple[str, ...]  # components read from the folder
    missing: tuple[str, ...] = ()  # model components absent, freshly initialised (allow_partial)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not self.missing


def _param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _component_config(model: AVLink, name: str) -> dict[str, Any]:
    p = model.preset
    if name in ("video_dit", "audio_dit"):
        dit = getattr(model, name)
        return {**asdict(dit.cfg), "token_dim": dit.token_dim, "grid": list(dit.grid)}
    if name == "text":
        return asdict(p.text)
    if name == "fusion":
        return {**asdict(p.fusion), "plan": model.plan}
    if name == "external":
        return {"depth": p.fusion.external_depth}
    if name == "vocoder":
        return asdict(p.vocoder)
    raise KeyError(name)


def _save_safetensors(path: Path, module: nn.Module, name: str) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"component": name, "format": str(FORMAT)})
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_model_json(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MODEL_JSON
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing; not an avlink model folder")
    try:
        info = json.loads(path.read_text())
        if info.get("format") != FORMAT or not isinstance(info.get("components"), dict):
            raise ValueError
    except (ValueError, AttributeError):
        raise ModelFolderError(
            f"{path}: unreadable or of an unknown format (expected format {FORMAT})"
        ) from None
    return info


def save_model(
    folder: str | Path,
    model: AVLink,
    *,
    vocoder: NeuralVocoder | None = None,
    components: list[str] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write `components` (default: all of the model's, and the vocoder if given). Components
    already in the folder are kept (and `meta` merged over the old one) when the folder's preset
    and ablation match this model's; otherwise the folder is rewritten from scratch."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = model.components() | ({"vocoder": vocoder} if vocoder is not None else {})
    names = (
        list(model.components()) + (["vocoder"] if vocoder is not None else [])
        if components is None
        else list(components)
    )
    if unknown := [n for n in names if n not in parts]:
        raise ValueError(f"cannot save {unknown}: not part of this model (have {list(parts)})")
    kept: dict[str, Any] = {}
    old_meta: dict[str, Any] = {}
    if (folder / MODEL_JSON).is_file():
        try:
            old = read_model_json(folder)
            same = (
                Preset.from_dict(old["preset"]) == model.preset
                and Ablation.from_dict(old.get("ablation", {})) == model.ablation
            )
            listed = read_manifest(folder)["files"]
            if same:
                old_meta = dict(old.get("meta") or {})
                kept = {
                    n: e
                    for n, e in old["components"].items()
                    if n not in names and e["file"] in listed
                }
        except (ModelFolderError, ManifestError, KeyError, TypeError, ValueError):
            kept = {}
    if kept:  # never re-bless a corrupt file into the new manifest
        try:
            verify_folder(folder, [e["file"] for e in kept.values()])
        except ManifestError as e:
            raise IntegrityError(f"{e}; refusing to keep it in the saved model") from None
    entries = dict(kept)
    for name in names:
        _save_safetensors(folder / f"{name}.safetensors", parts[name], name)
        entries[name] = {
            "file": f"{name}.safetensors",
            "params": _param_count(parts[name]),
            "config": _component_config(model, name),
        }
    for stale in set(model.components()) | {"vocoder"}:
        if stale not in entries:
            (folder / f"{stale}.safetensors").unlink(missing_ok=True)
    info = {
        "format": FORMAT,
        "preset": model.preset.to_dict(),
        "ablation": model.ablation.to_dict(),
        "components": dict(sorted(entries.items())),
        "meta": old_meta | (meta or {}),
    }
    write_json_atomic(folder / MODEL_JSON, info)
    write_manifest(folder, [MODEL_JSON] + [e["file"] for e in entries.values()])
    return folder


def _load_component(
    path: Path, module: nn.Module, *, device: torch.device | str, dtype: torch.dtype | None
) -> None:
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({e})") from None
    expected = module.state_dict()
    if missing := sorted(set(expected) - set(tensors)):
        raise StateDictError(
            f"{path}: missing key {missing[0]!r}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    if extra := sorted(set(tensors) - set(expected)):
        raise StateDictError(
            f"{path}: unexpected key {extra[0]!r}"
            + (f" and {len(extra) - 1} more" if len(extra) > 1 else "")
        )
    for key, ref in expected.items():
        if tensors[key].shape != ref.shape:
            raise StateDictError(
                f"{path}: key {key!r} has shape {tuple(tensors[key].shape)}, the model needs {tuple(ref.shape)}"
            )
    # copy=True: tensors parsed from the file buffer can be misaligned, and a misaligned weight
    # takes other CPU kernels whose rounding differs; fresh storage makes loads bit-exact
    tensors = {
        k: v.to(
            device=device,
            dtype=dtype if dtype is not None and v.is_floating_point() else None,
            copy=True,
        )
        for k, v in tensors.items()
    }
    module.load_state_dict(tensors, strict=True, assign=True)


def load_model(
    folder: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    allow_partial: bool = False,
) -> LoadedModel:
    """Verify the manifest, build on the meta device, load every component strictly.

    dtype None keeps the stored dtype. Raises a `ModelFolderError` subclass naming the file or
    key: `IntegrityError` (hash, size, missing file), `StateDictError` (keys, shapes),
    `IncompleteModelError` (a model component absent and allow_partial False).
    """
    folder = Path(folder)
    info = read_model_json(folder)
    files = {
        name: entry.get("file", f"{name}.safetensors") for name, entry in info["components"].items()
    }
    try:
        verify_folder(folder, [MODEL_JSON, *files.values()])
    except ManifestError as e:
        raise IntegrityError(str(e)) from None
    try:
        preset, ablation = (
            Preset.from_dict(info["preset"]),
            Ablation.from_dict(info.get("ablation", {})),
        )
    except (TypeError, ValueError, KeyError) as e:
        raise ModelFolderError(f"{folder / MODEL_JSON}: bad preset or ablation ({e})") from None
    with torch.device("meta"):
        model = AVLink(preset, ablation)
        vocoder = NeuralVocoder(preset.vocoder, preset.audio) if "vocoder" in files else None
    parts = model.components() | ({"vocoder": vocoder} if vocoder is not None else {})
    if unknown := sorted(set(files) - set(parts)):
        raise ModelFolderError(f"{folder / MODEL_JSON}: unknown components {unknown}")
    missing = tuple(n for n in model.components() if n not in files)
    if missing and not allow_partial:
        raise IncompleteModelError(
            f"{folder}: no {', '.join(f'{n}.safetensors' for n in missing)} (a partially trained folder); "
            "finish training or load with allow_partial=True"
        )
    for name, file in files.items():
        _load_component(folder / file, parts[name], device=device, dtype=dtype)
    for name in missing:  # fresh weights, as a new model would have them
        module = parts[name]
        module.to_empty(device=device)
        module.init_weights()
        if dtype is not None:
            module.to(dtype)
    if meta_left := [n for n, p in model.named_parameters() if p.is_meta]:
        raise ModelFolderError(f"{folder}: parameters left unloaded: {meta_left[:3]}")
    model.eval()
    if vocoder is not None:
        vocoder.eval()
    loaded = tuple(n for n in parts if n in files)
    return LoadedModel(model, vocoder, loaded, missing, dict(info.get("meta") or {}))
