"""A small JSON-RPC client for driving the language server over stdio in tests.

Messages use the LSP base protocol (``Content-Length`` headers). A reader thread collects
responses by id and notifications in arrival order; server-to-client requests are
answered with ``null`` so the server never waits on us.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable


def uri(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


class LspClient:
    def __init__(self, *args: str, command: list[str] | None = None, cwd: str | None = None):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            command or [sys.executable, "-m", "cai_dsl.lsp", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self._next_id = 0
        self._responses: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.notifications: list[dict] = []
        self.server_requests: list[dict] = []
        self._notified = threading.Condition()
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.stderr: list[bytes] = []

    # ------------------------------------------------------------ transport

    def _send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _read(self) -> None:
        stream = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = stream.readline()
                if not line:
                    return
                line = line.strip()
                if not line:
                    break
                name, _, value = line.decode("ascii").partition(":")
                headers[name.lower()] = value.strip()
            message = json.loads(stream.read(int(headers["content-length"])))
            if "id" in message and "method" in message:  # a request from the server
                self.server_requests.append(message)
                self._send({"id": message["id"], "result": None})
            elif "id" in message:
                with self._lock:
                    box = self._responses.setdefault(message["id"], queue.Queue())
                box.put(message)
            else:
                with self._notified:
                    self.notifications.append(message)
                    self._notified.notify_all()

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    def request(self, method: str, params: Any = None, timeout: float = 20.0) -> Any:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            box = self._responses.setdefault(rid, queue.Queue())
        self._send({"id": rid, "method": method, "params": params})
        message = box.get(timeout=timeout)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message.get("result")

    def notify(self, method: str, params: Any = None) -> None:
        self._send({"method": method, "params": params})

    # ------------------------------------------------------------ LSP helpers

    def initialize(self, root: str | Path, options: dict | None = None) -> dict:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": uri(root),
                "capabilities": {
                    "textDocument": {"publishDiagnostics": {"relatedInformation": True}},
                    "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": True}},
                },
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return result

    def open(self, path: str | Path, text: str | None = None) -> str:
        u = uri(path)
        self.texts[u] = Path(path).read_text(encoding="utf-8") if text is None else text
        self.versions[u] = 1
        self.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": u, "languageId": "const", "version": 1, "text": self.texts[u]}},
        )
        return u

    def change(self, u: str, text: str) -> int:
        self.versions[u] += 1
        self.texts[u] = text
        self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": u, "version": self.versions[u]}, "contentChanges": [{"text": text}]},
        )
        return self.versions[u]

    def diagnostics(
        self, u: str, until: Callable[[list[dict]], bool] = lambda d: True, version: int | None = None, timeout: float = 20.0
    ) -> list[dict]:
        """The newest diagnostics published for ``u`` (at ``version`` if given) that satisfy ``until``."""
        deadline = time.monotonic() + timeout
        with self._notified:
            while True:
                for n in reversed(self.notifications):
                    if n.get("method") != "textDocument/publishDiagnostics" or n["params"]["uri"] != u:
                        continue
                    if version is not None and n["params"].get("version") != version:
                        break
                    if until(n["params"]["diagnostics"]):
                        return n["params"]["diagnostics"]
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching diagnostics for {u}")
                self._notified.wait(timeout=left)

    def at(self, u: str, needle: str, offset: int = 0, occurrence: int = 0) -> dict:
        """The LSP position of the ``occurrence``-th ``needle`` in the buffer, plus ``offset`` characters."""
        text = self.texts[u]
        index = -1
        for _ in range(occurrence + 1):
            index = text.index(needle, index + 1)
        before = text[: index + offset]
        line = before.count("\n")
        col = before[before.rfind("\n") + 1 :]
        return {"line": line, "character": len(col.encode("utf-16-le")) // 2}

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit")
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
