"""`cai lsp` on stdio and on TCP (loopback)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.lsp.client import LspClient
from tests.lsp.conftest import CONTRADICTION, REPO

CAI = str(Path(sys.executable).with_name("cai"))


def test_cai_lsp_on_stdio(tmp_path):
    path = tmp_path / "broken.const"
    path.write_text(CONTRADICTION + "principle {")
    client = LspClient(command=[CAI, "lsp", "--budget", "5"])
    result = client.initialize(REPO)
    assert result["serverInfo"]["name"] == "cai-lsp"
    assert result["capabilities"]["codeActionProvider"]["codeActionKinds"] == ["quickfix"]
    u = client.open(path)
    assert client.diagnostics(u, lambda d: any(x["code"] == "CAI001" for x in d))
    client.close()
    assert client.proc.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cai_lsp_on_tcp_loopback():
    port = _free_port()
    proc = subprocess.Popen([CAI, "lsp", "--tcp", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=20)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.1)
        with sock:
            body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}).encode()
            sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            headers = dict(line.split(b":", 1) for line in head.split(b"\r\n"))
            length = int(headers[b"Content-Length"])
            while len(rest) < length:
                rest += sock.recv(65536)
            assert json.loads(rest[:length])["result"]["serverInfo"]["name"] == "cai-lsp"
    finally:
        proc.kill()
        proc.wait()


def test_bad_port_is_a_usage_error():
    done = subprocess.run([CAI, "lsp", "--tcp", "70000"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "PORT" in done.stderr
