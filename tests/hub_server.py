"""A minimal local Hugging Face Hub for tests: the HTTP endpoints huggingface_hub's real client calls to create a
repo, make a branch, upload a folder (preupload + NDJSON commit, files inline) and download files (HEAD/GET resolve,
revision info). Repositories live in memory; every request is logged. Bound to 127.0.0.1 only."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlparse


class HubState:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, dict[str, Any]] = {}  # repo_id -> {"private": bool, "branches": {name: {path: bytes}}}
        self.commits: dict[str, dict[str, str]] = {}  # repo_id -> {branch: commit sha}
        self.log: list[tuple[str, str, int]] = []


def _sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def make_handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        # ------------------------------------------------------------------ helpers
        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            state.log.append((self.command, self.path, status))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), headers)

        def _error(self, status: int, message: str, code: str | None = None) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            self._json(status, {"error": message}, headers)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _authorized(self) -> bool:
            return self.headers.get("Authorization") == f"Bearer {state.token}"

        def _repo(self, repo_id: str, write: bool = False) -> dict[str, Any] | None:
            repo = state.repos.get(repo_id)
            if repo is None:
                self._error(404, f"Repository {repo_id} not found", "RepoNotFound")
                return None
            if (write or repo["private"]) and not self._authorized():
                self._error(401, "Invalid credentials", "RepoNotFound")
                return None
            return repo

        # ------------------------------------------------------------------ routes
        def do_POST(self) -> None:  # noqa: N802
            path = unquote(urlparse(self.path).path)
            body = self._body()
            if path == "/api/repos/create":
                if not self._authorized():
                    return self._error(401, "Invalid credentials")
                data = json.loads(body)
                repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                if repo_id in state.repos:
                    return self._error(409, "You already created this model repo")
                private = bool(data.get("private")) or data.get("visibility") == "private"
                state.repos[repo_id] = {"private": private, "branches": {"main": {}}}
                state.commits[repo_id] = {"main": _sha(repo_id.encode())}
                return self._json(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})
            if path == "/api/validate-yaml":  # the client checks a README's metadata before committing it
                return self._json(200, {"errors": [], "warnings": []})
            match = re.fullmatch(r"/api/models/(.+?)/(preupload|commit|branch)/(.+)", path)
            if not match:
                return self._error(404, f"no route for POST {path}")
            repo_id, action, revision = match.groups()
            repo = self._repo(repo_id, write=True)
            if repo is None:
                return None
            if action == "branch":
                if revision in repo["branches"]:
                    return self._error(409, f"Branch {revision} already exists")
                repo["branches"][revision] = dict(repo["branches"]["main"])
                state.commits[repo_id][revision] = state.commits[repo_id]["main"]
                return self._json(200, {})
            if revision not in repo["branches"]:
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            if action == "preupload":
                files = json.loads(body)["files"]
                return self._json(
                    200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                )
            files = repo["branches"][revision]
            summary = ""
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    summary = item["value"].get("summary", "")
                elif item["key"] == "file":
                    files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                elif item["key"] == "deletedFile":
                    files.pop(item["value"]["path"], None)
                else:
                    return self._error(400, f"unsupported commit item {item['key']}")
            sha = _sha(json.dumps(sorted((p, _sha(c)) for p, c in files.items())).encode() + summary.encode())
            state.commits[repo_id][revision] = sha
            url = f"http://{self.headers['Host']}/{repo_id}/commit/{sha}"
            return self._json(200, {"commitUrl": url, "commitOid": sha, "commitMessage": summary})

        def do_GET(self) -> None:  # noqa: N802
            self._get_or_head()

        def do_HEAD(self) -> None:  # noqa: N802
            self._get_or_head()

        def _get_or_head(self) -> None:
            path = unquote(urlparse(self.path).path)
            match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
            if match:  # model_info / revision info
                repo_id, revision = match.group(1), match.group(2) or "main"
                repo = self._repo(repo_id)
                if repo is None:
                    return None
                if revision not in repo["branches"]:
                    return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
                files = repo["branches"][revision]
                return self._json(
                    200,
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": state.commits[repo_id][revision],
                        "private": repo["private"],
                        "siblings": [{"rfilename": p} for p in files],
                    },
                )
            match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            if not match:
                return self._error(404, f"no route for {self.command} {path}")
            repo_id, revision, filename = match.groups()
            repo = self._repo(repo_id)
            if repo is None:
                return None
            commits = state.commits[repo_id]
            branch = (
                revision
                if revision in repo["branches"]
                else next((b for b, sha in commits.items() if sha == revision), None)
            )
            if branch is None:
                return self._error(404, f"Revision {revision} not found", "RevisionNotFound")
            content = repo["branches"][branch].get(filename)
            if content is None:
                return self._error(404, f"Entry {filename} not found", "EntryNotFound")
            headers = {"ETag": f'"{_sha(content)}"', "X-Repo-Commit": commits[branch]}
            return self._send(200, content, headers, content_type="application/octet-stream")

    return Handler


class LocalHub:
    """Context manager: a running local Hub at ``self.endpoint``."""

    def __init__(self, token: str = "hf_local_test_token") -> None:
        self.state = HubState(token)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
