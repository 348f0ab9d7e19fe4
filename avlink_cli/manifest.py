"""The sha256 manifest of a model folder.

A model folder holds `model.json`, one `<component>.safetensors` per component and
`manifest.json`: {"format": 1, "files": {"<name>": {"sha256": "...", "size": N}}}. Every file
the manifest names must be present with that size and hash; loading refuses anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from avlink_cli.files import set_default_mode

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestError(Exception):
    """A model folder whose files do not match its manifest."""


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: object) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(folder: Path, names: list[str]) -> dict:
    """Hash `names` (files inside `folder`) and write manifest.json; returns the manifest."""
    folder = Path(folder)
    files = {}
    for name in sorted(names):
        p = folder / name
        files[name] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    manifest = {"format": FORMAT, "files": files}
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path}: missing manifest; not an avlink model folder")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ManifestError(f"{path}: unreadable manifest") from None
    return manifest


def verify_file(path: Path, entry: dict) -> None:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: missing (listed in the manifest)")
    size = path.stat().st_size
    if size != entry["size"]:
        raise ManifestError(f"{path}: size {size} bytes, manifest says {entry['size']}")
    digest = sha256_file(path)
    if digest != entry["sha256"]:
        raise ManifestError(
            f"{path}: sha256 mismatch (got {digest[:12]}…, manifest says {entry['sha256'][:12]}…); "
            "the file is corrupt or was changed"
        )


def verify_folder(folder: Path, names: list[str] | None = None) -> dict:
    """Check the named files (default: all in the manifest) against manifest.json."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest["files"]
    for name in names if names is not None else list(files):
        if name not in files:
            raise ManifestError(f"{folder / name}: not listed in {folder / MANIFEST}")
        verify_file(folder / name, files[name])
    return manifest
