"""The only module that imports paramiko: SSH to GPU nodes.

Host keys are pinned in the database and checked with RejectPolicy: an unknown or changed key
is a permanent failure, never a prompt. The agent is run as `sudo -n <agent> <verb>` with its
input as JSON on stdin, so nothing a user typed is ever part of a command line. Errors come out
as SshError with `permanent` telling the caller whether a retry can help.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

CONNECT_TIMEOUT = 10
COMMAND_TIMEOUT = 120
# Pauses before connecting again when a node cut a handshake short (its sshd reloading takes
# a moment: the agent's installer reloads it): about 2 s in all, then the caller's retry rules.
HANDSHAKE_RETRY_PAUSES = (0.2, 0.5, 1.2)
AGENT_VERBS = {
    "version",
    "inventory",
    "status",
    "ensure-account",
    "set-keys",
    "set-gpus",
    "start-jupyter",
    "stop-jupyter",
    "revoke",
    "grant-gpus",
    "release-gpus",
    # Read-only: the portal may ask a node for a sample on demand.
    "sample",
}
# Verbs the node runs itself as root and the portal never runs: not in the sudo rule, so the
# provisioning account cannot trigger them. `push` sends samples with the node's token, read
# from a root-only file; root's systemd timer runs it.
NODE_LOCAL_VERBS = {"push"}
# Agent error codes worth another try; all others are permanent. A full disk may be freed;
# a file-size limit or other limits of the provisioning account (file_too_large,
# caller_limits) are the same on every try until an operator changes them.
TRANSIENT_AGENT_ERRORS = {"jupyter_timeout", "processes_remain", "disk_full"}
# sudo refusing the agent ("a password is required": its digest is not in the rule) for as long
# as an upgrade's file swap can take to be seen by a sudo that read the rule just before: asked
# again once after this pause, then it is for good (agent_missing). Nothing ran: safe to repeat.
SUDO_REFUSAL_PAUSE = 2.0


class SshError(Exception):
    def __init__(self, message: str, *, permanent: bool, code: str = "ssh") -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.code = code
        # The node answered but ended the handshake (refused, reset, closed): what its sshd
        # does for the moment it reloads. Connection tries again a few times before giving up.
        self.cut_short = False


@dataclass(frozen=True)
class Target:
    """Where and as whom to connect: plain values, so callers never hand over ORM objects."""

    address: str
    port: int
    username: str
    host_key: str  # "ssh-ed25519 AAAA…" as pinned by an operator
    agent_path: str


def fingerprint(key_line: str) -> str:
    blob = base64.b64decode(key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fetch_host_key(address: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str:
    """The key the host presents now, as "type base64", for an operator to confirm."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise SshError(f"cannot reach {address}:{port}: {exc}", permanent=False, code="unreachable") from exc
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except (paramiko.SSHException, OSError) as exc:
        raise SshError(f"SSH handshake with {address}:{port} failed: {exc}", permanent=False) from exc
    finally:
        transport.close()


def _cut_short(exc: BaseException) -> bool:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return all(isinstance(e, ConnectionRefusedError) for e in exc.errors.values())
    return isinstance(exc, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, EOFError))


def _load_private_key(path: str | Path) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(str(path))
    except (OSError, paramiko.SSHException) as exc:
        raise SshError(f"cannot load the portal's SSH key {path}: {exc}", permanent=True, code="key") from exc


class Connection:
    """One SSH connection to one node, reused for every agent call of a job."""

    def __init__(self, target: Target, private_key: str | Path, *, timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        if not target.host_key:
            raise SshError(f"no host key is pinned for {target.address}", permanent=True, code="unpinned")
        pkey = _load_private_key(private_key)
        for pause in (*HANDSHAKE_RETRY_PAUSES, None):
            try:
                self._connect(pkey, timeout)
                return
            except SshError as exc:
                if pause is None or not exc.cut_short:
                    raise
            time.sleep(pause)

    def _connect(self, pkey: paramiko.PKey, timeout: float) -> None:
        target = self.target
        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key_type, key_b64 = target.host_key.split()[:2]
        host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
        known_as = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
        self.client.get_host_keys().add(known_as, key_type, host_key)
        try:
            self.client.connect(
                target.address,
                port=target.port,
                username=target.username,
                pkey=pkey,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            self.client.close()
            raise SshError(
                f"host key of {target.address} changed (expected {fingerprint(target.host_key)}, got "
                f"SHA256:{base64.b64encode(hashlib.sha256(exc.key.asbytes()).digest()).decode().rstrip('=')})",
                permanent=True,
                code="host_key_mismatch",
            ) from exc
        except paramiko.AuthenticationException as exc:
            self.client.close()
            raise SshError(f"authentication as {target.username} refused: {exc}", permanent=True, code="auth") from exc
        except paramiko.SSHException as exc:
            keys_exchanged = self._keys_exchanged()
            self.client.close()
            permanent = "not found in known_hosts" in str(exc)
            error = SshError(str(exc), permanent=permanent, code="host_key_mismatch" if permanent else "ssh")
            # The banner cut off (closed or reset), not one that never came (a timeout: waiting
            # again would only wait again).
            error.cut_short = (
                not keys_exchanged and "protocol banner" in str(exc) and _cut_short(exc.__context__ or exc)
            )
            raise error from exc
        except (OSError, EOFError) as exc:
            keys_exchanged = self._keys_exchanged()
            self.client.close()
            error = SshError(f"cannot reach {target.address}:{target.port}: {exc}", permanent=False, code="unreachable")
            error.cut_short = not keys_exchanged and _cut_short(exc)
            raise error from exc

    def _keys_exchanged(self) -> bool:
        """Whether the node got as far as proving its pinned host key: a connection lost after
        that (during authentication) is not a reloading sshd, and the key is not offered again."""
        transport = self.client.get_transport()
        return transport is not None and transport.host_key is not None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def _exec(self, command: str, stdin_bytes: bytes, timeout: float) -> tuple[int, bytes, bytes]:
        try:
            stdin, stdout, stderr = self.client.exec_command(command, timeout=timeout)
            # No PTY: it would echo the JSON back and end of input would never arrive.
            stdin.write(stdin_bytes)
            stdin.channel.shutdown_write()
            out = stdout.read()
            err = stderr.read()
            return stdout.channel.recv_exit_status(), out, err
        except (paramiko.SSHException, OSError, TimeoutError) as exc:
            raise SshError(f"connection to {self.target.address} failed: {exc}", permanent=False) from exc

    def agent(self, verb: str, payload: dict | None = None, *, timeout: float = COMMAND_TIMEOUT) -> dict:
        """Run one agent verb through sudo and return its JSON answer."""
        if verb not in AGENT_VERBS:
            raise ValueError(f"unknown agent verb {verb}")
        command = f"sudo -n {shlex.quote(self.target.agent_path)} {verb}"
        status, out, err = self._exec(command, json.dumps(payload or {}).encode(), timeout)
        if _refused_by_sudo(out, err):
            time.sleep(SUDO_REFUSAL_PAUSE)
            status, out, err = self._exec(command, json.dumps(payload or {}).encode(), timeout)
        return _agent_answer(verb, status, out, err)

    def run_python_as_root(self, program: bytes, *, use_sudo: bool, what: str) -> dict:
        """Installation only, with an operator credential: run `program` (read from stdin, so
        nothing is staged on the node's disk) as root and return its JSON answer."""
        command = f"{'sudo -n ' if use_sudo else ''}/usr/bin/python3 -I -S -"
        status, out, err = self._exec(command, program, COMMAND_TIMEOUT)
        return _agent_answer(what, status, out, err)


def _refused_by_sudo(out: bytes, err: bytes) -> bool:
    """sudo said no before anything ran (no answer from the agent on stdout)."""
    return not out.strip() and b"sudo:" in err and b"a password is required" in err


def _agent_answer(verb: str, status: int, out: bytes, err: bytes) -> dict:
    text = out.decode(errors="replace").strip()
    try:
        answer = json.loads(text.splitlines()[-1]) if text else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        message = err.decode(errors="replace").strip()[:1000] or text[:1000] or f"exit status {status}"
        # sudo refusing (e.g. the agent's digest changed) or no agent at all: a retry cannot help.
        raise SshError(f"agent {verb} gave no answer: {message}", permanent=True, code="agent_missing")
    if not answer.get("ok"):
        code = answer.get("error", "agent")
        raise SshError(
            f"agent {verb}: {answer.get('message', code)}", permanent=code not in TRANSIENT_AGENT_ERRORS, code=code
        )
    return answer


def ensure_key_pair(path: str | Path) -> str:
    """The portal's ed25519 key at `path` (created, mode 0600, if missing); returns the public
    key line to install on nodes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    key = _load_private_key(path)
    return f"{key.get_name()} {key.get_base64()} gpu-portal"
