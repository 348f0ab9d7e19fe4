"""Resolve `--model` to a verified model folder: a local folder, the packaged weights, or the Hub.

A model spec is one of
- a folder on disk holding `manifest.json` (see `manifest.py`);
- a preset name such as `avsynth-s`: the packaged `weights/<name>/` if present, else the preset's
  Hub repo in `HUB_REPOS`, at the revision pinned there (`avsynth-s@v1` asks for another);
- a Hub id `org/name[@revision]`, the revision a branch, tag or commit (default `main`).

Packaged weights live in `weights/` next to the `avlink_cli` package (a repository checkout or an
editable install). Set AVLINK_WEIGHTS to a folder of `<name>/` model folders to use another place.

Hub downloads go through huggingface_hub's `snapshot_download` into its cache (HF_HUB_CACHE, or
`cache_dir`), in two steps at one commit: `manifest.json` and `model.json` first, then only the
files those two name, and the model card README.md (a repo may hold anything else). It checks sizes only, so every file the
manifest lists is then checked against its sha256; a file that fails is evicted from the cache
(snapshot link and blob) so that running again downloads it afresh. Offline (`offline=True`, or
HF_HUB_OFFLINE set) nothing touches the network: the model comes from the cache or the call fails
saying what is missing. Every failure is a `HubError` whose message is one line for the user.

A local folder gets the same checks as a Hub snapshot: no file name in its manifest or model.json
may lead outside it (absolute, or with `..`).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from huggingface_hub import scan_cache_dir, snapshot_download
from huggingface_hub.utils import (  # where every huggingface_hub from 0.2x to 2.x exports them
    CacheNotFound,
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    validate_repo_id,
)

from avlink_cli.manifest import (
    MANIFEST,
    ManifestError,
    read_manifest,
    sha256_file,
    verify_file,
    verify_folder,
)
from avlink_cli.presets import PRESETS
from avlink_cli.version import __version__

logger = logging.getLogger(__name__)

# preset -> (Hub repo, the revision a bare preset name fetches). Pinned, so that a release of
# avlink always gets the weights it was tested with; `avsynth-s@main` asks for the newest.
# (The tag of this release's upload; replace it by the upload's commit sha once it is on the Hub.)
HUB_REPOS: dict[str, tuple[str, str]] = {"avsynth-s": ("avlink/avsynth-s", "v0.1.0")}
MODEL_JSON = "model.json"
MODEL_CARD = "README.md"  # the Hub's model card: fetched with the files a model needs
WEIGHTS_ENV = "AVLINK_WEIGHTS"
DEFAULT_REVISION = "main"

_HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>\S+))?")
_PATH_PREFIXES = (".", "/", "~", os.sep)


class HubError(Exception):
    """A model that cannot be found, fetched or verified; the message is one line for the user."""


@dataclass(frozen=True)
class HubRef:
    """A model repository on the Hub at one revision."""

    repo_id: str
    revision: str = DEFAULT_REVISION
    preset: str | None = None  # the preset name the user gave, if any

    def __str__(self) -> str:
        return (
            self.repo_id if self.revision == DEFAULT_REVISION else f"{self.repo_id}@{self.revision}"
        )

    @property
    def label(self) -> str:
        """How messages name the model: the preset as given, or the Hub id."""
        return f"'{self}'" if self.preset is None else f"preset '{self.preset}' ('{self}')"


def weights_dir() -> Path:
    """The folder of packaged model folders: $AVLINK_WEIGHTS, else `weights/` beside the package."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "weights"


def packaged_folder(name: str) -> Path | None:
    """The packaged model folder `weights/<name>/`, or None when there is none."""
    folder = weights_dir() / name
    return folder if (folder / MANIFEST).is_file() else None


def is_offline(offline: bool | None = None) -> bool:
    """`offline` if given, else whether HF_HUB_OFFLINE is set (read now, not at import)."""
    if offline is not None:
        return offline
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return env in {"1", "ON", "YES", "TRUE"} or bool(hf_constants.HF_HUB_OFFLINE)


def resolve_model(
    spec: str,
    *,
    offline: bool | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Turn a `--model` spec into a local model folder whose files match its manifest.

    Order: an existing folder; a packaged preset folder; a preset's Hub repo; a Hub id. Hub models
    come from the huggingface_hub cache, downloading what is missing unless offline.
    """
    spec = spec.strip()
    if (path := _local_path(spec)) is not None:
        return _verified_local(path)
    name, _, revision = spec.partition("@")
    if not revision and "/" not in name and (packaged := packaged_folder(name)) is not None:
        return _verified_local(packaged)
    return _fetch(_hub_ref(spec), offline=offline, endpoint=endpoint, cache_dir=cache_dir)


def download(
    spec: str,
    *,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
    revision: str | None = None,
    local_dir: Path | None = None,
) -> Path:
    """Fetch a preset's Hub repo or a Hub id into the huggingface_hub cache and verify it.

    Returns the snapshot folder. Files already cached are not fetched again, but all are checked
    against the manifest. With HF_HUB_OFFLINE set it only checks the cache. With `local_dir`
    the files go there as plain files (huggingface_hub keeps the commit it fetched in
    `local_dir/.cache/huggingface/`), and the folder is then a model folder for `--model`.
    """
    spec = spec.strip()
    if _local_path(spec) is not None:
        raise HubError(f"{spec!r} is a local model folder; there is nothing to download")
    ref = _hub_ref(spec)
    if revision is not None:
        if "@" in spec and ref.revision != revision:
            raise HubError(
                f"{spec!r} names revision {ref.revision!r} but --revision is {revision!r}"
            )
        ref = replace(ref, revision=revision)
    return _fetch(ref, offline=None, endpoint=endpoint, cache_dir=cache_dir, local_dir=local_dir)


def _local_path(spec: str) -> Path | None:
    """The folder `spec` names on disk; None when `spec` is no path at all."""
    if not spec:
        raise HubError("empty model spec; give a preset name, a model folder or a Hub id org/name")
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise HubError(f"{path} is a file, not a model folder")
    if spec.startswith(_PATH_PREFIXES) or spec.endswith(("/", os.sep)):
        raise HubError(f"no model folder at {path}")
    return None


def _verified_local(folder: Path) -> Path:
    try:
        _needed_files(folder, f"model folder {folder}")
        verify_folder(folder)
    except ManifestError as e:
        raise HubError(str(e)) from e
    return folder.resolve()


def _hub_ref(spec: str) -> HubRef:
    """The Hub repo behind a preset name or `org/name[@revision]` spec."""
    name, _, revision = spec.partition("@")
    if name in HUB_REPOS:
        repo, pinned = HUB_REPOS[name]
        return HubRef(repo, revision or pinned, preset=name)
    if name in PRESETS:
        raise HubError(
            f"preset {name!r} has no packaged weights in {weights_dir()} and no Hub repo; "
            "train one or pass a model folder"
        )
    match = _HUB_ID.fullmatch(spec)
    if match is None:
        known = ", ".join(sorted(set(PRESETS) | set(HUB_REPOS)))
        raise HubError(
            f"{spec!r} is not a model: give a preset name ({known}), a model folder "
            "or a Hub id org/name[@revision]"
        )
    try:
        validate_repo_id(match["repo"])
    except HFValidationError as e:
        raise HubError(f"{spec!r} is not a valid Hub id: {_first_line(e)}") from e
    return HubRef(match["repo"], match["rev"] or DEFAULT_REVISION)


def _fetch(
    ref: HubRef,
    *,
    offline: bool | None,
    endpoint: str | None,
    cache_dir: Path | None,
    local_dir: Path | None = None,
) -> Path:
    """Snapshot `ref` into the cache (or find it there when offline) and verify it."""
    offline_now = is_offline(offline)
    host = endpoint or hf_constants.ENDPOINT
    retry = f"run `avlink download {ref}` with network"

    def snapshot(revision: str, files: list[str]) -> Path:
        return Path(
            snapshot_download(
                ref.repo_id,
                revision=revision,
                cache_dir=cache_dir,
                local_dir=local_dir,
                endpoint=endpoint,
                local_files_only=offline_now,
                allow_patterns=[glob.escape(name) for name in files],  # names, not patterns
                library_name="avlink",
                library_version=__version__,
            )
        )

    try:
        head = snapshot(ref.revision, [MANIFEST, MODEL_JSON])
        try:
            needed = _needed_files(head, f"model {ref.label}")
        except ManifestError as e:
            _evict(head / MANIFEST)
            raise HubError(f"model {ref.label} is not an avlink model: {e}") from e
        # the same commit: a cache snapshot is named by it (a --local-dir folder is not)
        folder = snapshot(ref.revision if local_dir else head.name, needed)
    except HubError:
        raise
    except LocalEntryNotFoundError as e:  # not cached (or partly) and no network to fetch it
        if offline_now:
            why = "--offline is set" if offline else "HF_HUB_OFFLINE is set"
        else:
            why = f"the Hub at {host} cannot be reached ({_first_line(e.__cause__ or e)})"
        where = _describe_cache(ref, cache_dir)
        raise HubError(f"model {ref.label} is {where} and {why}; {retry}") from e
    except RevisionNotFoundError as e:
        raise HubError(f"{ref.repo_id} has no revision {ref.revision!r} on {host}") from e
    except RepositoryNotFoundError as e:
        raise HubError(f"no model repo {ref.repo_id!r} on {host} (or it is private)") from e
    except EntryNotFoundError as e:  # listed by the repo, 404 on download
        response = getattr(e, "response", None)
        name = str(response.url).rsplit("/", 1)[-1] if response is not None else "a file"
        raise HubError(
            f"model {ref.label}: the repo lists {name} but {host} has no such file"
        ) from e
    except HfHubHTTPError as e:
        raise HubError(f"downloading model {ref.label} from {host} failed: {_first_line(e)}") from e
    except Exception as e:  # connection lost mid-transfer, disk full, size mismatch, ...
        detail = f"{type(e).__name__}: {_first_line(e)}"
        raise HubError(f"downloading model {ref.label} from {host} failed: {detail}") from e
    return _verify_snapshot(Path(folder), ref, retry=retry, offline=offline_now)


def _describe_cache(ref: HubRef, cache_dir: Path | None) -> str:
    """Where the model is missing from: 'not in' or 'only partly in' the cache, and why not packaged."""
    repo_cache = (
        Path(cache_dir or hf_constants.HF_HUB_CACHE) / f"models--{ref.repo_id.replace('/', '--')}"
    )
    commit = ref.revision
    if (refs := repo_cache / "refs" / ref.revision).is_file():
        commit = refs.read_text().strip()
    state = "only partly in" if (repo_cache / "snapshots" / commit).is_dir() else "not in"
    packaged = "" if ref.preset is None else f"; no packaged copy in {weights_dir()}"
    return f"{state} the local cache ({repo_cache}{packaged})"


def _needed_files(folder: Path, label: str) -> list[str]:
    """model.json, the manifest, every file they name and the model card; HubError for a name
    outside the folder (absolute, or with ..). ManifestError when there is no readable manifest."""
    named = [(name, MANIFEST) for name in read_manifest(folder)["files"]]
    try:  # a model.json that cannot be read is for loading to report, with its file named
        components = json.loads((folder / MODEL_JSON).read_text())["components"]
        named += [(e.get("file", f"{c}.safetensors"), MODEL_JSON) for c, e in components.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    for name, where in named:
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise HubError(f"{label}: {where} names {name!r}, outside the model folder")
    return list(dict.fromkeys([MANIFEST, MODEL_JSON, *(name for name, _ in named), MODEL_CARD]))


def _verify_snapshot(folder: Path, ref: HubRef, *, retry: str, offline: bool) -> Path:
    """Check every manifest entry by sha256, evicting corrupt files from the cache."""
    try:
        manifest = read_manifest(folder)
    except ManifestError as e:
        _evict(folder / MANIFEST)
        raise HubError(f"model {ref.label} is not an avlink model: {e}") from e
    for name, entry in manifest["files"].items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise HubError(f"model {ref.label}: manifest names {name!r}, outside the model folder")
        try:
            verify_file(path, entry)
        except ManifestError as e:
            if not path.is_file():
                where = (
                    f"the local cache lacks it; {retry}" if offline else "the repo has no such file"
                )
                raise HubError(f"model {ref.label}: the manifest lists {name} but {where}") from e
            _evict(path)
            detail = _first_line(e).removeprefix(f"{path}: ")
            again = retry if offline else "running again downloads it afresh"
            raise HubError(
                f"model {ref.label}: {name}: {detail}; removed it from the cache, {again}"
            ) from e
    logger.debug("verified %d files of %s in %s", len(manifest["files"]), ref, folder)
    return folder


def _evict(path: Path) -> None:
    """Delete a cached file: its snapshot link and the blob behind it, so it is fetched again."""
    if path.is_symlink():
        blob = path.resolve()
        path.unlink()
        if blob.parent.name == "blobs":  # only ever delete inside the cache's blob store
            blob.unlink(missing_ok=True)
    elif path.is_file():
        path.unlink()
    logger.info("removed corrupt %s from the cache", path)


def describe_folder(folder: Path) -> dict[str, str | None]:
    """Which weights a model folder holds: its path, the Hub commit when it is a snapshot in the
    huggingface_hub cache (``.../snapshots/<commit>``), and the sha256 of its manifest (which
    lists the sha256 of every file, so it names the weights wherever they came from)."""
    folder = Path(folder)
    commit = folder.name if folder.parent.name == "snapshots" else None
    fetched = folder / ".cache" / "huggingface" / "download" / f"{MANIFEST}.metadata"
    if commit is None and fetched.is_file():  # a --local-dir download: its first line
        commit = fetched.read_text().split("\n", 1)[0].strip() or None
    manifest = folder / MANIFEST
    sha = sha256_file(manifest) if manifest.is_file() else None
    return {"model_path": str(folder), "model_revision": commit, "model_sha": sha}


def installed_models(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Model folders on this machine: the packaged ones (`weights_dir()`) and every snapshot in
    the huggingface_hub cache that holds a manifest, each with its revision, size on disk and
    manifest sha256. Nothing is downloaded or verified."""
    rows = []
    packaged = weights_dir()
    for folder in sorted(packaged.iterdir()) if packaged.is_dir() else []:
        if (folder / MANIFEST).is_file():
            size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
            rows.append({"model": folder.name, "source": "packaged", "size": size})
            rows[-1] |= _renamed(describe_folder(folder))
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return rows
    for repo in sorted(cache.repos, key=lambda r: r.repo_id):
        for snap in sorted(repo.revisions, key=lambda r: r.commit_hash):
            if (Path(snap.snapshot_path) / MANIFEST).is_file():
                refs = sorted(snap.refs)
                name = repo.repo_id + (f"@{refs[0]}" if refs else "")
                rows.append({"model": name, "source": "hub cache", "size": snap.size_on_disk})
                rows[-1] |= _renamed(describe_folder(Path(snap.snapshot_path)))
    return rows


def _renamed(d: dict[str, str | None]) -> dict[str, str | None]:
    return {"revision": d["model_revision"], "model_sha": d["model_sha"], "path": d["model_path"]}


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def model_json_on_disk(spec: str) -> Path | None:
    """The model.json of the model `spec` names when it is on disk already: a model folder, the
    packaged weights, or a Hub model in the huggingface_hub cache. Not verified, and the network
    is never touched: for checks made before the model is resolved and loaded (`--overlap`).
    None when there is none yet, or when `spec` is no model at all (resolve_model says why)."""
    spec = spec.strip()
    try:
        if (path := _local_path(spec)) is not None:
            return path / "model.json"
        name, _, revision = spec.partition("@")
        if not revision and "/" not in name and (packaged := packaged_folder(name)) is not None:
            return packaged / "model.json"
        ref = _hub_ref(spec)
    except HubError:
        return None
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(ref.repo_id, "model.json", revision=ref.revision)
    return Path(hit) if isinstance(hit, str) else None
