"""gpu-portal node agent: the only program the portal runs on a GPU node.

Run by the provisioning account as `sudo -n <agent> VERB`, with a JSON object on stdin; it
answers one JSON object on stdout: {"ok": true, ...} with exit 0, or {"ok": false, "error":
CODE, "message": TEXT} with exit 2 (refused or failed) or 3 (a bug). Every verb is idempotent:
running it twice leaves the node as running it once does.

Stdlib only (Python >= 3.9); `pynvml` (nvidia-ml-py) is used when present. No argument is
ever passed through a shell. The agent only touches accounts and groups it created itself: the
name is exactly the configured prefix and digits, the uid is the one the portal allocated, and
a root-only record the agent wrote at creation must match. It cannot install itself, write
sudo rules or touch any other account: installation is `gpu_portal_install.py`, run once with
the operator's credential, and sudo allows the provisioning account only the verbs in `cli`.

A node gets this package as ONE file: `allocations.node_install.render_agent` packs it into a
deterministic zipapp run by `/usr/bin/python3 -IS` (isolated, without `site`: only the zip and
the stdlib are importable, plus pynvml from a root-only system folder), so sudo's sha256 digest
covers every module. Modules:
`common` (configuration, limits, AgentError, managed names and records), `userland` (a user's
~/.ssh files and processes), `accounts`, `jupyter`, `devices` (inventory and GPU isolation),
`metering` (sample, push) and `cli` (the verbs and main). Relative imports only: the package
is `gpu_portal_agent` inside the zip and `allocations.agent.gpu_portal_agent` in a checkout.
"""

from .accounts import device_cgroup_command
from .cli import VERBS, main
from .common import CONFIG_PATH, DEFAULT_CONFIG, VERSION, AgentError
from .devices import acl_bytes, acl_uids
from .metering import process_user, spool_batch, verb_sample

__all__ = [
    "CONFIG_PATH",
    "DEFAULT_CONFIG",
    "VERBS",
    "VERSION",
    "AgentError",
    "acl_bytes",
    "acl_uids",
    "device_cgroup_command",
    "main",
    "process_user",
    "spool_batch",
    "verb_sample",
]
