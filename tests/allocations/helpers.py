"""Helpers for tests that provision real accounts on the sshd node stand-in."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path

import paramiko
from django.utils import timezone

from allocations.agent import gpu_portal_agent as agent
from allocations.jobs import grant_provision_job, node_tasks_job
from allocations.models import Grant
from allocations.services import nodes as node_services
from allocations.services.keys import sshkey_add
from portal.services import applications as app_services
from tests.factories import ApplicationFactory, CallFactory, UserFactory, award_of


def add_key(tmp_path: Path, user, name: str) -> Path:
    """A fresh ed25519 key pair for `user`, added to their account; returns the private key."""
    key = tmp_path / f"{name}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    sshkey_add(user=user, text=key.with_suffix(".pub").read_text(), name="laptop")
    return key


def user_with_key(tmp_path: Path, name: str = "researcher"):
    """An application (4 GPUs) whose principal investigator has a fresh key pair; returns
    (application, private key path)."""
    app = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    return app, add_key(tmp_path, app.principal_investigator, name)


def approved_grant(app, **award) -> Grant:
    approver = UserFactory(is_staff=True)
    app_services.application_submit(application=app, actor=app.principal_investigator)
    app_services.application_start_review(application=app, actor=approver)
    # Tests start grants today, before the call's allocation window: confirmed on purpose.
    return app_services.application_approve(
        application=app, actor=approver, **award_of(app, **award), confirm_outside_window=True
    )


def provision(grant: Grant) -> Grant:
    """What the worker does after approval: place, then run the node's tasks."""
    grant_provision_job(grant.pk)
    grant.refresh_from_db()
    node = grant.assignments.first().node
    node_tasks_job(node.pk)
    grant.refresh_from_db()
    return grant


# A handshake the node's sshd cut short before authentication (reset, closed: what it does while
# it reloads, or for a moment under load) is tried again after these pauses, as the portal's own
# connection does (allocations/ssh.py); an authentication or host-key failure never is.
HANDSHAKE_RETRY_PAUSES = (0.2, 0.5, 1.2)


def _connect(client: paramiko.SSHClient, node, username: str, key: Path) -> None:
    for pause in (*HANDSHAKE_RETRY_PAUSES, None):
        try:
            client.connect(
                node.address, port=node.ssh_port, username=username, key_filename=str(key),
                timeout=10, allow_agent=False, look_for_keys=False,
            )  # fmt: skip
            return
        except (paramiko.AuthenticationException, paramiko.BadHostKeyException):
            raise
        except (paramiko.SSHException, ConnectionError, EOFError):
            if pause is None:
                raise
            client.close()
            time.sleep(pause)


def ssh_as(node, username: str, key: Path, command: str) -> tuple[int, str]:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key_b64 = node.host_key.split()[:2]
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{node.address}]:{node.ssh_port}", key_type, host_key)
    _connect(client, node, username, key)
    try:
        _stdin, stdout, _stderr = client.exec_command(command, timeout=20)
        out = stdout.read().decode()
        return stdout.channel.recv_exit_status(), out
    finally:
        client.close()


def active_grant(app, days: int = 30) -> Grant:
    """The application approved from today for `days` days and provisioned: active."""
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=days)))
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    return grant


def probe_loop(device: str, out: str) -> str:
    """A background job of the user that keeps trying to open `device`, writing the outcome."""
    return (
        f"setsid nohup sh -c 'while true; do if (: < {device}) 2>/dev/null; then echo open > {out}.tmp; "
        f"else echo refused > {out}.tmp; fi; mv -f {out}.tmp {out}; sleep 0.3; done' >/dev/null 2>&1 < /dev/null &"
    )


def probe_result(out: str) -> str:
    """What the probe last saw ("open", "refused"), waiting a moment for its first answer."""
    for _ in range(30):
        try:
            return Path(out).read_text().strip()
        except FileNotFoundError:
            time.sleep(0.1)
    return ""


def live_processes(username: str) -> list[str]:
    """`ps` lines of the user's processes that are not zombies (this machine's pid 1 does not
    reap the orphans of killed processes: they stay as zombies, running nothing)."""
    ps = subprocess.run(["ps", "-u", username, "-o", "stat=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if not line.strip().startswith("Z")]


def device_acl_uids(path: str):
    """The uids the device file's POSIX ACL lets in ([] without an ACL), read as the kernel
    stores it."""
    try:
        value = os.getxattr(path, "system.posix_acl_access", follow_symlinks=False)
    except OSError:
        return []
    return agent.acl_uids(value)


def wipe_node(node_host, grant: Grant, username: str) -> list[str]:
    """What a reinstalled node (or `make clean-demo` on the demo node) leaves of a provisioned
    grant: no account, no keys file, fresh device files without an ACL. Returns the devices."""
    subprocess.run(["pkill", "-KILL", "-u", username], check=False)
    time.sleep(0.5)
    subprocess.run(["userdel", "-r", "-f", username], check=True, capture_output=True)
    devices = [node_host.device(a.gpu.index) for a in grant.assignments.all()]
    for device in devices:  # a fresh driver's device files: closed, no ACL
        os.removexattr(device, "system.posix_acl_access")
        os.chmod(device, 0o600)
    Path(node_host.keys_dir, username).unlink(missing_ok=True)
    return devices


def as_provisioning(node, command: str, payload: dict | None = None) -> tuple[int, str]:
    """Run `command` on the node as the provisioning account, `payload` as its input."""
    with node_services.connect(node) as conn:
        status, out, err = conn._exec(command, json.dumps(payload or {}).encode(), 30)
    return status, (out + err).decode()


def agent_answer(output: str) -> dict:
    """The agent's JSON answer in what as_provisioning returned."""
    return json.loads(next(line for line in output.splitlines() if line.startswith("{")))


def can_lift_limits() -> bool:
    """CAP_SYS_RESOURCE (bit 24) in this process's effective set: what lets root raise a hard
    limit. Containers often drop it; the agent, run by sudo here, has what we have. Any root
    can raise a soft limit up to the hard one."""
    caps = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("CapEff:"))
    return bool(int(caps.split()[1], 16) & (1 << 24))
