"""The node agent ships as one file; the portal installs it with the node's config path baked in."""

from __future__ import annotations

import re
from pathlib import Path

AGENT_FILE = Path(__file__).with_name("gpu_portal_agent.py")
DEFAULT_CONFIG_PATH = "/etc/gpu-portal/agent.json"


def render_agent(config_path: str = DEFAULT_CONFIG_PATH) -> bytes:
    if not re.fullmatch(r"/[A-Za-z0-9/._-]+", config_path):
        raise ValueError("config path must be an absolute path of plain characters")
    source = AGENT_FILE.read_text()
    rendered, count = re.subn(r'^CONFIG_PATH = "[^"]*"$', f'CONFIG_PATH = "{config_path}"', source, count=1, flags=re.M)
    assert count == 1, "the agent lost its CONFIG_PATH line"
    return rendered.encode()
