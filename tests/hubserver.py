"""A fake Hugging Face Hub on 127.0.0.1 for tests: just the routes huggingface_hub downloads use.

- GET /api/models/{repo}/revision/{rev}: {"id", "sha", "siblings"} (`snapshot_download` resolves
  the revision to a commit here; huggingface_hub < 1.0 also lists the files from `siblings`)
- GET /api/models/{repo}/tree/{rev}: [{"type": "file", "path", "size", "oid"}] (2.x lists files here)
- HEAD/GET /{repo}/resolve/{rev}/{path}: the bytes, with X-Repo-Commit, ETag and Content-Length,
  honouring `Range: bytes=a-[b]` (206 + Content-Range) as a resumed download asks.

Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) as the real Hub does, so
huggingface_hub raises its own typed errors. `log` records every request as (method, path).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
from safetensors.numpy import save_file

from avlink_cli.manifest import write_manifest

_RESOLVE = re.compile(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)")
_API = re.compile(r"/api/models/(?P<repo>[^/]+/[^/]+)/(?P<kind>revision|tree)/(?P<rev>[^/]+)")


def write_model_folder(folder: Path, *, seed: int = 0) -> Path:
    """A small model folder: model.json, two safetensors files and manifest.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    (folder / "model.json").write_text(json.dumps({"preset": "tiny", "seed": seed}))
    save_file(
        {"w": rng.standard_normal((8, 4), dtype=np.float32)}, str(folder / "audio_dit.safetensors")
    )
    save_file({"b": rng.standard_normal(16, dtype=np.float32)}, str(folder / "fusion.safetensors"))
    write_manifest(folder, ["model.json", "audio_dit.safetensors", "fusion.safetensors"])
    return folder


def read_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


class FakeHub:
    """Serves repos of commits; `corrupt` and `missing` break named files on the resolve route."""

    def __init__(self) -> None:
        self.commits: dict[str, dict[str, dict[str, bytes]]] = {}  # repo -> sha -> files
        self.refs: dict[str, dict[str, str]] = {}  # repo -> branch/tag -> sha
        self.corrupt: set[str] = set()  # served with flipped bytes under the true headers
        self.missing: set[str] = set()  # listed by the API but 404 on resolve
        self.log: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = (
            set()
        )  # closed on stop: keep-alive outlives shutdown

    def add_commit(
        self, repo: str, files: dict[str, bytes], *, refs: tuple[str, ...] = ("main",)
    ) -> str:
        digest = hashlib.sha1(repr(sorted(files.items())).encode())
        sha = digest.hexdigest()
        self.commits.setdefault(repo, {})[sha] = dict(files)
        for ref in refs:
            self.refs.setdefault(repo, {})[ref] = sha
        return sha

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def file_requests(self) -> list[tuple[str, str]]:
        return [entry for entry in self.log if "/resolve/" in entry[1]]

    def start(self) -> FakeHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        serve = self._server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go down like a dead host: refuse new connections and drop pooled ones."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def lookup(self, repo: str, rev: str) -> tuple[str, dict[str, bytes]] | str:
        """(sha, files) for a revision, or the X-Error-Code to answer with."""
        if repo not in self.commits:
            return "RepoNotFound"
        sha = self.refs[repo].get(rev, rev)
        if sha not in self.commits[repo]:
            return "RevisionNotFound"
        return sha, self.commits[repo][sha]


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of a Hub

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            hub._connections.add(self.connection)

        def finish(self) -> None:
            hub._connections.discard(self.connection)
            super().finish()

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            path = urlsplit(self.path).path
            hub.log.append((self.command, path))
            if match := _API.fullmatch(path):
                return self._api(unquote(match["repo"]), match["kind"], unquote(match["rev"]))
            if match := _RESOLVE.fullmatch(path):
                return self._resolve(
                    unquote(match["repo"]), unquote(match["rev"]), unquote(match["path"]), body=body
                )
            self._send(404, b"not found", {"X-Error-Code": "EntryNotFound"})

        def _api(self, repo: str, kind: str, rev: str) -> None:
            found = hub.lookup(repo, rev)
            if isinstance(found, str):
                return self._send(404, found.encode(), {"X-Error-Code": found})
            sha, files = found
            if kind == "revision":
                data: object = {
                    "id": repo,
                    "sha": sha,
                    "siblings": [{"rfilename": n} for n in files],
                }
            else:
                data = [
                    {"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                    for n, b in files.items()
                ]
            self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

        def _resolve(self, repo: str, rev: str, name: str, *, body: bool) -> None:
            found = hub.lookup(repo, rev)
            if isinstance(found, str):
                return self._send(404, found.encode(), {"X-Error-Code": found}, body=body)
            sha, files = found
            if name not in files or name in hub.missing:
                headers = {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha}
                return self._send(404, b"entry not found", headers, body=body)
            data = files[name]
            headers = {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            headers["Accept-Ranges"] = "bytes"
            if name in hub.corrupt:  # same length and headers, different bytes: only a hash sees it
                data = bytes(b ^ 0xFF for b in data)
            status = 200
            if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "")):
                start, end = int(match[1]), int(match[2] or len(data) - 1)
                headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                data, status = data[start : end + 1], 206
            self._send(status, data, headers, body=body)

        def _send(
            self, status: int, data: bytes, headers: dict[str, str], *, body: bool = True
        ) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
