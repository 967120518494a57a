"""What installing the node agent sends to a node: the installer program with the agent, its
configuration and the sudo and sshd settings inside, for the operator's credential to run as
root. Nothing is uploaded to the node's file system before root has checked it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from allocations import ssh

AGENT_DIR = Path(__file__).with_name("agent")
AGENT_PACKAGE = AGENT_DIR / "gpu_portal_agent"
# The module that defines VERSION and CONFIG_PATH (the line install_agent rewrites).
AGENT_COMMON = AGENT_PACKAGE / "common.py"
# The node's system python3, isolated (-I: no user site, no PYTHON* variables, no script or
# working directory on sys.path) and without `site` (-S: no `.pth` file of a site-packages folder
# runs as root); only the zip itself (sys.path[0]) and the stdlib are importable, and pynvml from
# a system site-packages folder only root can write (common.system_site_packages). One argument:
# the kernel passes everything after the interpreter as one.
AGENT_INTERPRETER = b"#!/usr/bin/python3 -IS\n"
# What the zip runs: the package inside it, found through sys.path[0] (the zip) first.
AGENT_ZIP_MAIN = "import sys\n\nfrom gpu_portal_agent.cli import main\n\nsys.exit(main(sys.argv))\n"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
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


def agent_sources(config_path: str = DEFAULT_CONFIG_PATH) -> dict[str, bytes]:
    """Name in the zip → bytes: the package's modules under `gpu_portal_agent/`, with the node's
    configuration path on the CONFIG_PATH line, and the zip's `__main__.py`."""
    if not PLAIN_PATH.fullmatch(config_path):
        raise ValueError("config path must be an absolute path of plain characters")
    sources = {}
    for path in sorted(AGENT_PACKAGE.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path == AGENT_COMMON:
            text, count = re.subn(
                r'^CONFIG_PATH = "[^"]*"$', f'CONFIG_PATH = "{config_path}"', text, count=1, flags=re.M
            )
            if count != 1:
                raise ValueError("the agent lost its CONFIG_PATH line")
        sources[f"gpu_portal_agent/{path.name}"] = text.encode()
    sources["__main__.py"] = AGENT_ZIP_MAIN.encode()
    return sources


def render_agent(config_path: str = DEFAULT_CONFIG_PATH) -> bytes:
    """The agent as one file with the node's configuration path baked in, so sudo's digest
    covers every module: the interpreter line, then a zip (Python runs a zip with a
    `__main__.py` directly). Deterministic: the same sources give the same bytes and digest,
    whenever and wherever rendered (sorted names, fixed dates and modes, stored uncompressed, so
    no zlib version changes a byte)."""
    buffer = io.BytesIO()
    buffer.write(AGENT_INTERPRETER)  # offsets in the zip then count from the file's first byte
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in sorted(agent_sources(config_path).items()):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            archive.writestr(info, data)
    return buffer.getvalue()


def agent_version() -> str:
    found = re.search(r'^VERSION = "([^"]+)"$', AGENT_COMMON.read_text(encoding="utf-8"), flags=re.M)
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
    program = INSTALLER_FILE.read_text(encoding="utf-8") + f'\n\nsys.exit(main("{encoded}"))\n'
    return program.encode(), digest
