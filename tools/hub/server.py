"""A local Hugging Face Hub for tests: serves repository folders over HTTP with the endpoints that huggingface_hub,
datasets, transformers and evaluate call, answering as the Hub does (404 with its error-code header, X-Repo-Commit
and ETag on resolve, HTTP Range with 206). Test infrastructure only: nothing a learner runs depends on it.

Layout: ROOT/{models,datasets,spaces}/<repo id>/ with a `.hubrepo` file (JSON, {"tags": [...]}) marking each repo.
Usage: python -m tools.hub.server ROOT [--port 0]   (prints `HF_ENDPOINT=http://127.0.0.1:PORT` once it listens)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tools.hub.standin import REPO_MARKER as MARKER

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_BYTES = 10 * 2**20  # files this large are served as the Hub serves LFS files: sha256 ETag, X-Linked-* headers
LFS_SUFFIXES = (".safetensors", ".bin", ".parquet", ".gz", ".model", ".arrow")
DATE = "2026-01-01T00:00:00.000Z"


class HubError(Exception):
    """An answer other than 200: status, the Hub's X-Error-Code, and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


class Repo:
    """One repository folder: its files with their sizes and hashes (computed once), commit id and tags."""

    def __init__(self, kind: str, repo_id: str, folder: Path):
        self.kind, self.id, self.folder = kind, repo_id, folder
        self.tags = json.loads((folder / MARKER).read_text(encoding="utf-8") or "{}").get("tags", [])
        self._files: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """{path in repo: {size, oid (git blob sha1), sha256 for LFS files}}, sorted by path."""
        with self._lock:
            if self._files is None:
                self._files = {}
                for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and p.name != MARKER):
                    self._files[path.relative_to(self.folder).as_posix()] = _describe(path)
            return self._files

    @property
    def sha(self) -> str:
        """The commit id: a hash of every file's path and blob id."""
        listing = json.dumps([(p, f["oid"]) for p, f in self.files.items()])
        return hashlib.sha1(f"{self.kind}/{self.id} {listing}".encode()).hexdigest()

    def check_revision(self, revision: str) -> None:
        """Accept main, the commit id and the repo's tags; RevisionNotFound otherwise."""
        if revision not in ("main", self.sha, *self.tags):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def entry(self, path: str, expand: bool = False) -> dict[str, Any]:
        """The tree/paths-info entry of a file or folder."""
        if path in self.files:
            f = self.files[path]
            out = {"type": "file", "oid": f["oid"], "size": f["size"], "path": path}
            if "sha256" in f:
                out["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": 134}
            if expand:
                out["lastCommit"] = {"id": self.sha, "title": "stand-in", "date": DATE}
            return out
        if any(p.startswith(path + "/") for p in self.files):
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        raise HubError(404, "EntryNotFound", f"{path} does not exist on \"main\"")

    def tree(self, path: str, recursive: bool) -> list[dict[str, Any]]:
        """The entries below `path` ('' = the root): direct children, or every descendant."""
        if path:
            self.entry(path)  # EntryNotFound for a missing folder
        prefix = path + "/" if path else ""
        names: dict[str, None] = {}
        for file in self.files:
            if not file.startswith(prefix):
                continue
            parts = file[len(prefix):].split("/")
            depth = len(parts) if recursive else 1
            for n in range(1, depth + 1):
                names[prefix + "/".join(parts[:n])] = None
        return [self.entry(n) for n in sorted(names)]

    def info(self, blobs: bool) -> dict[str, Any]:
        """The repo_info / model_info answer."""
        siblings = []
        for path, f in self.files.items():
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f["size"], blobId=f["oid"])
                if "sha256" in f:
                    sibling["lfs"] = {"size": f["size"], "sha256": f["sha256"], "pointerSize": 134}
            siblings.append(sibling)
        return {"_id": self.sha[:24], "id": self.id, "sha": self.sha, "private": False, "disabled": False,
                "gated": False, "downloads": 0, "likes": 0, "tags": [], "lastModified": DATE, "createdAt": DATE,
                "siblings": siblings, **({"sdk": "static"} if self.kind == "space" else {})}


def _describe(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    blob, sha256 = hashlib.sha1(f"blob {size}\0".encode()), hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(2**22):
            blob.update(chunk)
            sha256.update(chunk)
    out: dict[str, Any] = {"size": size, "oid": blob.hexdigest()}
    if size >= LFS_BYTES or path.suffix in LFS_SUFFIXES:
        out["sha256"] = sha256.hexdigest()
    return out


def find_repos(root: Path) -> dict[str, dict[str, Repo]]:
    """{'model'|'dataset'|'space': {repo id: Repo}} for every folder under ROOT that holds a `.hubrepo` file."""
    repos: dict[str, dict[str, Repo]] = {kind: {} for kind in TYPES.values()}
    for plural, kind in TYPES.items():
        for marker in sorted((root / plural).glob(f"**/{MARKER}")):
            repo_id = marker.parent.relative_to(root / plural).as_posix()
            repos[kind][repo_id] = Repo(kind, repo_id, marker.parent)
    return repos


class Hub:
    """The repositories under a root, and the Hub's answers for them."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.repos = find_repos(self.root)

    def split(self, kind: str, rest: str) -> tuple[Repo, str]:
        """'<repo id>/<what follows>' -> (the repo, what follows), the longest known id first; RepoNotFound."""
        for repo_id in sorted(self.repos[kind], key=len, reverse=True):
            if rest == repo_id or rest.startswith(repo_id + "/"):
                return self.repos[kind][repo_id], rest[len(repo_id) + 1:]
        raise HubError(404, "RepoNotFound", f"Repository not found: {kind} {rest.split('/resolve/')[0]}")


class Handler(BaseHTTPRequestHandler):
    """GET/HEAD/POST for the Hub's routes; every answer has a Content-Length."""

    hub: Hub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer(head=False, form=parse_qs(body))

    def _answer(self, head: bool, form: dict[str, list[str]] | None = None) -> None:
        url = urlsplit(self.path)
        try:
            if url.path in ("", "/"):
                return self._json({"hub": "course stand-in"}, head)
            if url.path.startswith("/api/"):
                return self._api(url.path[len("/api/"):], parse_qs(url.query), form, head)
            return self._resolve(url.path.lstrip("/"), head)
        except HubError as err:
            self._json({"error": str(err)}, head, err.status, {"X-Error-Code": err.code, "X-Error-Message": str(err)})

    def _api(self, path: str, query: dict[str, list[str]], form: dict[str, list[str]] | None, head: bool) -> None:
        plural, _, rest = path.partition("/")
        if plural not in TYPES:
            raise HubError(404, "RepoNotFound", f"no such API route: /api/{path}")
        repo, what = self.hub.split(TYPES[plural], unquote(rest))
        flag = lambda name: (form or query).get(name, ["false"])[0].lower() == "true"  # noqa: E731
        if what in ("", "refs") or what.startswith("revision/"):
            if what.startswith("revision/"):
                repo.check_revision(what[len("revision/"):])
            if what == "refs":
                main = [{"name": "main", "ref": "refs/heads/main", "targetCommit": repo.sha}]
                tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": repo.sha} for t in repo.tags]
                return self._json({"branches": main, "tags": tags, "converts": []}, head)
            return self._json(repo.info(blobs="blobs" in query and flag("blobs")), head)
        match = re.fullmatch(r"(tree|paths-info)/([^/]+)/?(.*)", what)
        if not match:  # the Hub reads /api/models/gpt2/x as the repo 'gpt2/x' (HfFileSystem relies on that)
            raise HubError(404, "RepoNotFound", f"Repository not found: {TYPES[plural]} {unquote(rest)}")
        route, revision, sub = match.groups()
        repo.check_revision(revision)
        if route == "tree":
            return self._json(repo.tree(sub.strip("/"), flag("recursive")), head)
        entries = []
        for p in (form or {}).get("paths", []):
            try:
                entries.append(repo.entry(p.strip("/"), flag("expand")))
            except HubError:
                continue  # the Hub leaves missing paths out of paths-info
        return self._json(entries, head)

    def _resolve(self, path: str, head: bool) -> None:
        plural, _, rest = path.partition("/")
        kind = TYPES.get(plural, "model")
        rest = unquote(rest if plural in TYPES else path)
        repo, what = self.hub.split(kind, rest)
        match = re.fullmatch(r"resolve/([^/]+)/(.+)", what)
        if not match:
            raise HubError(404, "EntryNotFound", f"not a file URL: /{path}")
        revision, file = match.groups()
        repo.check_revision(revision)
        if file not in repo.files:
            raise HubError(404, "EntryNotFound", f"Entry not found: {file}")
        self._file(repo, file, head)

    def _file(self, repo: Repo, file: str, head: bool) -> None:
        info = repo.files[file]
        size, start, end = info["size"], 0, info["size"] - 1
        status, headers = 200, {"X-Repo-Commit": repo.sha, "ETag": f'"{info["oid"]}"', "Accept-Ranges": "bytes",
                                "Content-Type": "application/octet-stream"}
        if "sha256" in info:
            headers.update({"X-Linked-Etag": f'"{info["sha256"]}"', "X-Linked-Size": str(size)})
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        if wanted and size:
            first, last = wanted.groups()
            start, end = (size - int(last), size - 1) if not first else (int(first), min(int(last or end), end))
            if start > end or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(end - start + 1 if size else 0)}.items():
            self.send_header(key, value)
        self.end_headers()
        if head or not size:
            return
        with (repo.folder / file).open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(2**20, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _json(self, data: Any, head: bool, status: int = 200, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)),
                           **(extra or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)


def make_server(root: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for the repositories under `root` on 127.0.0.1:`port` (0: a free port); call serve_forever()."""
    handler = type("BoundHandler", (Handler,), {"hub": Hub(root)})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with models/, datasets/, spaces/")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    server = make_server(args.root, args.port)
    print(f"HF_ENDPOINT=http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
