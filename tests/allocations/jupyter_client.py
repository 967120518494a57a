"""Reaching a member's JupyterLab the way the member does: the grant page's `ssh -N -L` tunnel
with the real OpenSSH client, then Jupyter's REST API and a kernel's websocket channel (a small
RFC 6455 client: the portal's environment has no websocket library)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.allocations.conftest import free_port, wait_for_port
from tests.processes import stop_process


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def _request(conn: http.client.HTTPConnection, method: str, path: str, token: str | None, body=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def socket_status(socket_path: str, token: str | None, path: str = "/api/status") -> int:
    """The HTTP status a server on a unix socket answers, reached as root (which any socket
    lets in: this checks the token, not the socket's permissions); 0 when nothing answers."""
    conn = UnixHTTPConnection(socket_path)
    try:
        return _request(conn, "GET", path, token)[0]
    except OSError:
        return 0
    finally:
        conn.close()


def http_status(port: int, token: str | None, path: str = "/api/status") -> int:
    """The HTTP status through a tunnel's local port; 0 when the tunnel cannot reach a server."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return _request(conn, "GET", path, token)[0]
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def http_json(port: int, token: str, method: str, path: str, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        status, data = _request(conn, method, path, token, body)
    finally:
        conn.close()
    assert status < 300, (status, data[:300])
    return json.loads(data) if data else None


@contextmanager
def ssh_tunnel(node, username: str, key: Path, socket_path: str, tmp_path: Path) -> Iterator[int]:
    """`ssh -N -L PORT:SOCKET user@node` as the grant page shows it; yields the local port. The
    node's sshd opens the socket as `username`, so its folder's permissions apply."""
    known_hosts = tmp_path / f"known_hosts_{username}"
    known_hosts.write_text(f"[{node.address}]:{node.ssh_port} {node.host_key}\n")
    port = free_port()
    log = tmp_path / f"ssh_tunnel_{username}_{port}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            ["ssh", "-F", "/dev/null", "-N", "-L", f"127.0.0.1:{port}:{socket_path}", "-p", str(node.ssh_port),
             "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
             "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
             f"{username}@{node.address}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        wait_for_port(port, timeout=20)
        yield port
    finally:
        stop_process(proc)


class WebSocket:
    """Just enough of a websocket client for Jupyter's kernel channel: text frames, masked."""

    def __init__(self, port: int, path: str, token: str, timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: token {token}\r\n\r\n".encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split()[1] == b"101", head

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the websocket closed")
        return chunk

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def send(self, obj: dict) -> None:
        payload = json.dumps(obj).encode()
        n = len(payload)
        length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        assert n < 65536
        mask = os.urandom(4)
        self.sock.sendall(bytes([0x81]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self) -> dict:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if second & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the server closed the websocket")
            if opcode in (0x9, 0xA):  # ping, pong
                continue
            message += payload
            if first & 0x80:
                return json.loads(message)

    def close(self) -> None:
        self.sock.close()


def run_in_kernel(port: int, token: str, code: str) -> str:
    """Start a Python kernel through the server's REST API, execute `code` over its websocket
    channel and return what it printed; the kernel is shut down afterwards."""
    kernel = http_json(port, token, "POST", "/api/kernels", {"name": "python3"})
    session_id = uuid.uuid4().hex
    ws = WebSocket(port, f"/api/kernels/{kernel['id']}/channels?session_id={session_id}", token)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(
            {
                "header": {"msg_id": msg_id, "username": "test", "session": session_id,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }
        )  # fmt: skip
        out = []
        while True:
            msg = ws.recv()
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                raise AssertionError(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
        http_json(port, token, "DELETE", f"/api/kernels/{kernel['id']}")
