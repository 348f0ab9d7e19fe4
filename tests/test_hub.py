"""Model resolution and Hub downloads, through the real huggingface_hub code against a local server."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest
from hubserver import FakeHub, read_folder, write_model_folder
from huggingface_hub import constants as hf_constants

from avlink_cli.hub import (
    HUB_REPOS,
    HubError,
    describe_folder,
    download,
    installed_models,
    resolve_model,
)
from avlink_cli.manifest import write_manifest

REPO = "org/tiny"


@pytest.fixture(autouse=True)
def _hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "AVLINK_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; the tests decide offline themselves.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))


@pytest.fixture
def main_files(tmp_path: Path) -> dict[str, bytes]:
    return read_folder(write_model_folder(tmp_path / "src_main", seed=0))


@pytest.fixture
def hub(main_files: dict[str, bytes]) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_commit(REPO, main_files, refs=("main",))
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _contents(folder: Path) -> dict[str, bytes]:
    return read_folder(folder)  # follows the cache's snapshot links to their blobs


def test_fresh_download(hub: FakeHub, cache: Path, main_files: dict[str, bytes]) -> None:
    folder = download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    assert folder.is_relative_to(cache)
    assert _contents(folder) == main_files
    fetched = {path.rsplit("/", 1)[-1] for method, path in hub.file_requests() if method == "GET"}
    assert fetched == set(main_files)


def test_cached_reuse_fetches_no_files(hub: FakeHub, cache: Path) -> None:
    first = download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    hub.log.clear()
    again = resolve_model(REPO, endpoint=hub.endpoint, cache_dir=cache)
    assert again == first
    assert hub.file_requests() == []  # only the revision lookup went out


def test_pinned_revision(hub: FakeHub, cache: Path, tmp_path: Path) -> None:
    v1_files = read_folder(write_model_folder(tmp_path / "src_v1", seed=1))
    sha = hub.add_commit(REPO, v1_files, refs=("v1",))
    main = resolve_model(REPO, endpoint=hub.endpoint, cache_dir=cache)
    v1 = resolve_model(f"{REPO}@v1", endpoint=hub.endpoint, cache_dir=cache)
    assert _contents(v1) == v1_files != _contents(main)
    assert resolve_model(f"{REPO}@{sha}", endpoint=hub.endpoint, cache_dir=cache) == v1
    assert download(REPO, revision="v1", endpoint=hub.endpoint, cache_dir=cache) == v1
    with pytest.raises(HubError, match="no revision 'v2'"):
        resolve_model(f"{REPO}@v2", endpoint=hub.endpoint, cache_dir=cache)


@pytest.mark.parametrize("how", ["not uploaded", "404 on resolve"])
def test_missing_file(hub: FakeHub, cache: Path, main_files: dict[str, bytes], how: str) -> None:
    files = dict(main_files)
    if how == "not uploaded":
        del files["fusion.safetensors"]
    else:
        hub.missing.add("fusion.safetensors")
    hub.add_commit("org/broken", files)
    with pytest.raises(HubError, match="fusion.safetensors") as info:
        resolve_model("org/broken", endpoint=hub.endpoint, cache_dir=cache)
    assert "\n" not in str(info.value)


def test_server_down_with_cache(hub: FakeHub, cache: Path, main_files: dict[str, bytes]) -> None:
    folder = download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    endpoint = hub.endpoint
    hub.stop()
    assert resolve_model(REPO, endpoint=endpoint, cache_dir=cache) == folder
    assert resolve_model(REPO, offline=True, endpoint=endpoint, cache_dir=cache) == folder
    assert _contents(folder) == main_files


def test_server_down_without_cache(hub: FakeHub, cache: Path) -> None:
    endpoint = hub.endpoint
    hub.stop()
    with pytest.raises(HubError, match="cannot be reached") as info:
        resolve_model(REPO, endpoint=endpoint, cache_dir=cache)
    assert "not in the local cache" in str(info.value) and "\n" not in str(info.value)


def test_corrupt_file_is_evicted_and_refetched(
    hub: FakeHub, cache: Path, main_files: dict[str, bytes]
) -> None:
    hub.corrupt.add("fusion.safetensors")
    with pytest.raises(HubError, match=r"fusion\.safetensors: sha256 mismatch"):
        download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    blobs = cache / "models--org--tiny" / "blobs"
    assert all(blob.read_bytes() in main_files.values() for blob in blobs.iterdir())
    snapshot = next((cache / "models--org--tiny" / "snapshots").iterdir())
    assert not (snapshot / "fusion.safetensors").exists()
    # Offline, the cache says what is missing rather than handing out a broken model.
    with pytest.raises(HubError, match="only partly in the local cache"):
        resolve_model(REPO, offline=True, endpoint=hub.endpoint, cache_dir=cache)

    hub.corrupt.clear()
    hub.log.clear()
    folder = download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    assert [p for m, p in hub.file_requests() if m == "GET"] == [
        f"/{REPO}/resolve/{snapshot.name}/fusion.safetensors"
    ]
    assert resolve_model(str(folder)) == folder.resolve()


def test_offline_never_connects(hub: FakeHub, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(
        HubError, match="not in the local cache .* --offline is set; run `avlink download"
    ):
        resolve_model(f"{REPO}@v1", offline=True, endpoint=hub.endpoint, cache_dir=cache)
    assert hub.log == []

    folder = download(REPO, endpoint=hub.endpoint, cache_dir=cache)
    hub.log.clear()
    assert resolve_model(REPO, offline=True, endpoint=hub.endpoint, cache_dir=cache) == folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model(REPO, endpoint=hub.endpoint, cache_dir=cache) == folder
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        download("org/other", endpoint=hub.endpoint, cache_dir=cache)
    assert hub.log == []


def test_preset_uses_packaged_folder_then_hub(
    hub: FakeHub,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    main_files: dict[str, bytes],
) -> None:
    weights = tmp_path / "weights"
    packaged = write_model_folder(weights / "avsynth-s", seed=3)
    monkeypatch.setenv("AVLINK_WEIGHTS", str(weights))
    assert resolve_model("avsynth-s", offline=True, cache_dir=cache) == packaged.resolve()
    assert hub.log == []

    hub.add_commit("avlink/avsynth-s", main_files, refs=(HUB_REPOS["avsynth-s"][1],))
    monkeypatch.setenv("AVLINK_WEIGHTS", str(tmp_path / "elsewhere"))
    folder = resolve_model("avsynth-s", endpoint=hub.endpoint, cache_dir=cache)
    assert folder.is_relative_to(cache / "models--avlink--avsynth-s")
    with pytest.raises(HubError, match="preset 'paper' has no packaged weights"):
        resolve_model("paper", endpoint=hub.endpoint, cache_dir=cache)


def test_local_folder(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "my model", seed=2)
    assert resolve_model(str(folder)) == folder.resolve()
    (folder / "fusion.safetensors").write_bytes(b"junk")
    with pytest.raises(HubError, match="fusion.safetensors: size 4 bytes"):
        resolve_model(str(folder))
    write_manifest(folder, ["model.json"])  # re-hashed: now valid again
    assert resolve_model(str(folder)) == folder.resolve()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("not a model", "is not a model: give a preset name"),
        ("./no/such/folder", "no model folder at"),
        ("", "empty model spec"),
        ("org/bad--name", "not a valid Hub id"),
    ],
)
def test_bad_spec(spec: str, message: str, cache: Path) -> None:
    with pytest.raises(HubError, match=message):
        resolve_model(spec, offline=True, cache_dir=cache)


def test_download_refuses_local_folder_and_conflicting_revision(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m")
    with pytest.raises(HubError, match="nothing to download"):
        download(str(folder))
    with pytest.raises(HubError, match="names revision 'v1' but --revision is 'v2'"):
        download(f"{REPO}@v1", revision="v2")


def test_model_card_beside_the_weights_and_local_dir_download(
    hub: FakeHub, cache: Path, tmp_path: Path, main_files: dict[str, bytes]
) -> None:
    """A README.md model card (not in the manifest) rides along: the Hub download, --local-dir
    and `models --installed` all take the folder, and strict loading never reads the card."""
    card = (
        Path(__file__).resolve().parent.parent / "weights" / "avsynth-s" / "README.md"
    ).read_bytes()
    assert card.startswith(b"---\nlicense: apache-2.0\n")  # the Hub's YAML front matter
    files = main_files | {"README.md": card}
    commit = hub.add_commit(REPO, files, refs=("main", "v1"))
    local = tmp_path / "here"
    folder = download(f"{REPO}@v1", endpoint=hub.endpoint, local_dir=local)
    assert folder == local and _contents(local) == files
    assert resolve_model(str(local)) == local.resolve()  # a model folder for --model
    assert describe_folder(local)["model_revision"] == commit
    download(f"{REPO}@v1", endpoint=hub.endpoint, cache_dir=cache)
    (row,) = [r for r in installed_models(cache) if r["source"] == "hub cache"]
    assert row["model"] == f"{REPO}@v1" and row["revision"] == commit
    assert row["model_sha"] == describe_folder(local)["model_sha"] and row["size"] > len(card)


# --- only what the model needs; no name leads outside the folder --------------------------------


def _manifest_for(files: dict[str, bytes]) -> bytes:
    entries = {
        n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in files.items()
    }
    return json.dumps({"format": 1, "files": entries}).encode()


def _gets(hub: FakeHub) -> set[str]:
    return {unquote(p).split("/resolve/", 1)[1].split("/", 1)[1] for m, p in hub.file_requests() if m == "GET"}  # fmt: skip


def test_download_fetches_only_what_the_manifest_and_model_json_name(
    hub: FakeHub, cache: Path, main_files: dict[str, bytes]
) -> None:
    weights = {"w[1].safetensors": b"\x01" * 64, "extra weights.bin": b"\x02" * 32}  # glob chars
    model_json = json.dumps({"components": {"x": {"file": "from model.json.bin"}}}).encode()
    listed = {"model.json": model_json, **weights}
    unlisted = {"notes.txt": b"training notes", "old/w0.safetensors": b"\x00" * 4096}
    card = {"README.md": b"---\nlicense: apache-2.0\n---\n# a model card"}  # rides along
    files = {**listed, **unlisted, **card, "from model.json.bin": b"\x03", "manifest.json": _manifest_for(listed)}  # fmt: skip
    hub.add_commit("org/extra", files)
    folder = download("org/extra", endpoint=hub.endpoint, cache_dir=cache)
    assert _gets(hub) == {"manifest.json", "model.json", "from model.json.bin", *weights, *card}
    assert not (folder / "notes.txt").exists() and not (folder / "old").exists()


@pytest.mark.parametrize("where", ["manifest", "model.json"])
@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/hostname", "a/../../b.bin"])
def test_no_name_leads_outside_a_model_folder(
    hub: FakeHub, cache: Path, tmp_path: Path, where: str, name: str
) -> None:
    (tmp_path / "outside.safetensors").write_bytes(b"not yours")
    folder = write_model_folder(tmp_path / "m")
    if where == "manifest":
        manifest = json.loads((folder / "manifest.json").read_text())
        outside = (folder / name).read_bytes() if (folder / name).is_file() else b""
        manifest["files"][name] = {"sha256": hashlib.sha256(outside).hexdigest(), "size": len(outside)}  # fmt: skip
        (folder / "manifest.json").write_text(json.dumps(manifest))
    else:
        (folder / "model.json").write_text(json.dumps({"components": {"fusion": {"file": name}}}))
        write_manifest(folder, ["model.json", "audio_dit.safetensors", "fusion.safetensors"])
    shown = "manifest.json" if where == "manifest" else "model.json"
    with pytest.raises(HubError, match=rf"{shown} names '{re.escape(name)}', outside the model"):
        resolve_model(str(folder))  # a local folder
    hub.add_commit("org/escape", read_folder(folder))
    with pytest.raises(HubError, match=rf"{shown} names '{re.escape(name)}', outside the model"):
        resolve_model("org/escape", endpoint=hub.endpoint, cache_dir=cache)
    assert _gets(hub) <= {"manifest.json", "model.json"}  # refused before fetching the rest
