"""What installing the node agent sends to a node: the installer program with the agent, its
configuration and the sudo and sshd settings inside, for the operator's credential to run as
root. Nothing is uploaded to the node's file system before root has checked it."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from allocations import ssh

AGENT_DIR = Path(__file__).with_name("agent")
AGENT_FILE = AGENT_DIR / "gpu_portal_agent.py"
INSTALLER_FILE = AGENT_DIR / "gpu_portal_install.py"
DEFAULT_CONFIG_PATH = "/etc/gpu-portal/agent.json"
PLAIN_PATH = re.compile(r"/[A-Za-z0-9/._-]+")
# What the installer itself needs of the agent's configuration (the agent has the same defaults).
INSTALL_DEFAULTS = {
    "state_dir": "/var/lib/gpu-portal-agent",
    "keys_dir": "/etc/gpu-portal/authorized_keys",
    "managed_group": "gpu-portal-users",
    "push_config": "/etc/gpu-portal/push.json",
}


@dataclass(frozen=True)
class SshdSettings:
    """Where the node's sshd keeps its configuration, drop-ins and pid (Debian's defaults)."""

    config: str = "/etc/ssh/sshd_config"
    dropin: str = "/etc/ssh/sshd_config.d/gpu-portal.conf"
    pid_file: str = "/run/sshd.pid"


def render_agent(config_path: str = DEFAULT_CONFIG_PATH) -> bytes:
    """The agent with the node's configuration path baked in, so sudo's digest covers it."""
    if not PLAIN_PATH.fullmatch(config_path):
        raise ValueError("config path must be an absolute path of plain characters")
    source = AGENT_FILE.read_text()
    rendered, count = re.subn(r'^CONFIG_PATH = "[^"]*"$', f'CONFIG_PATH = "{config_path}"', source, count=1, flags=re.M)
    if count != 1:
        raise ValueError("the agent lost its CONFIG_PATH line")
    return rendered.encode()


def agent_version() -> str:
    found = re.search(r'^VERSION = "([^"]+)"$', AGENT_FILE.read_text(), flags=re.M)
    return found.group(1) if found else ""


def installer_program(
    *,
    agent_path: str,
    config_path: str,
    config: dict,
    provisioning_user: str,
    public_key: str,
    sshd: SshdSettings,
    push: dict | None = None,
) -> tuple[bytes, str]:
    """The installer's source followed by its call with every input (base64 JSON, so no input
    is ever part of a command line). `push` ({"url", "token"}) sets up sending samples.
    Returns (program, the agent's sha256)."""
    agent = render_agent(config_path)
    digest = hashlib.sha256(agent).hexdigest()
    payload = {
        "version": agent_version(),
        "agent_b64": base64.b64encode(agent).decode(),
        "agent_sha256": digest,
        "agent_path": agent_path,
        "config_path": config_path,
        # The portal's uid range, unless the caller gives one: the agent refuses any other uid.
        "config": {
            **INSTALL_DEFAULTS,
            "id_min": settings.NODE_UNIX_ID_BASE + 1,
            "id_max": settings.NODE_UNIX_ID_MAX,
            **config,
        },
        "provisioning_user": provisioning_user,
        "public_key": public_key,
        "verbs": sorted(ssh.AGENT_VERBS),
        "push": push,
        "sshd": {"config": sshd.config, "dropin": sshd.dropin, "pid_file": sshd.pid_file},
    }
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    program = INSTALLER_FILE.read_text() + f'\n\nsys.exit(main("{encoded}"))\n'
    return program.encode(), digest
