"""The agent's configuration, limits and error, and what every verb relies on: only names of
the portal's exact form, only accounts the agent's own root-only record says it created."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import resource
import subprocess
import sys

VERSION = "2.3"
# Replaced when the portal installs the agent (install_agent), so the configuration lives where
# the node's operator put it; sudo's digest pinning then covers this line too.
CONFIG_PATH = "/etc/gpu-portal/agent.json"
DEFAULT_CONFIG = {
    "account_prefix": "gp",
    "jupyter_bin": "/opt/gpu-portal/jupyter/bin/jupyter",
    "jupyter_run_dir": "/run/gpu-portal-jupyter",
    "state_dir": "/var/lib/gpu-portal-agent",
    "nvml_replay": "",
    "shell": "/bin/bash",
    # Managed accounts' keys: root-owned files that sshd reads instead of anything in the home
    # (an sshd drop-in written at installation, for members of managed_group).
    "keys_dir": "/etc/gpu-portal/authorized_keys",
    "managed_group": "gpu-portal-users",
    # A GPU's device file; {minor} is NVML's minor number. The driver must not rewrite device
    # files (NVreg_ModifyDeviceFiles=0): the agent gives each GPU an ACL of its grant's members.
    "gpu_device_pattern": "/dev/nvidia{minor}",
    # `push`: a root-only JSON file {"url": ..., "token": ...} written by the installer; unsent
    # batches wait in state_dir/spool, at most spool_max of them (the oldest dropped first).
    "push_config": "/etc/gpu-portal/push.json",
    "spool_max": 1440,
}
KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) "
    r"[A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]{1,100})?$"
)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GPU_ID_RE = re.compile(r"^(GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9a-fA-F-]{8,64}|\d{1,2})$")
SESSION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # a Jupyter session's name: no dot, no slash
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
SAMPLE_USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")  # the portal's rule (sample_ingest.USER_RE)
SAMPLE_MAX_PROCESSES = 256  # the portal's limit per GPU sample (sample_ingest.MAX_PROCESSES)
MIN_UID = 1000
# What every GPU user needs besides their GPUs (no GPU is reachable through these alone), and
# the devices a distributed job needs, for the systemd DeviceAllow list.
DEVICE_ALLOW_SHARED = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
DEVICE_ALLOW_EXTRA = ["char-infiniband rw", "/dev/fuse rw"]
MAX_ID = 2**31 - 2
# Nothing in a user's home is read beyond this; a bigger file is refused.
MAX_USER_FILE = 256 * 1024
# A verb that runs longer than this is stopped: nothing a user does may block repairs.
VERB_TIMEOUT = 110


class AgentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- helpers ----------------------------------------------------------------------------------


# Settings that name a file or folder. Absolute only: a relative one would be looked up in the
# working directory of whoever runs sudo, a folder the provisioning account chooses.
PATH_SETTINGS = ("jupyter_bin", "jupyter_run_dir", "state_dir", "nvml_replay", "shell", "keys_dir",
                 "gpu_device_pattern", "push_config")  # fmt: skip


def load_config() -> dict:
    config = dict(DEFAULT_CONFIG)
    try:
        with open(CONFIG_PATH) as f:
            config.update(json.load(f))
    except FileNotFoundError:
        pass
    relative = relative_path_settings(config)
    if relative:
        name = relative[0]
        raise AgentError("bad_config", f"{name} in {CONFIG_PATH} must be an absolute path, not {config[name]!r}"[:300])
    return config


def relative_path_settings(config: dict) -> list[str]:
    """The PATH_SETTINGS of `config` that are not absolute paths (an empty nvml_replay means
    none). The agent refuses such a configuration for every verb; install_agent refuses it
    before touching the node (allocations.node_install)."""
    return [
        name
        for name in PATH_SETTINGS
        if name in config
        and not (name == "nvml_replay" and config[name] == "")
        and not (isinstance(config[name], str) and os.path.isabs(config[name]))
    ]


def write_all(fd: int, data: bytes) -> None:
    """All of `data` or an error, never a file cut short: os.write may write less than asked
    (a full disk, a file-size limit) and say so only by its count."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)  # the next call raises ENOSPC / EFBIG where the last stopped
        if written <= 0:
            raise AgentError("file_too_large", "the file could not be written in full")
        view = view[written:]


def replace_file(path: str, data: bytes, mode: int = 0o600, owner: tuple | None = None, dir_fd=None,
                 tmp: str | None = None) -> None:  # fmt: skip
    """`path` (relative to `dir_fd` when given) holds all of `data` or stays as it was: written
    in full to a temporary file next to it, never through a link, then renamed over it. A write
    that a full disk or a file-size limit stops removes the temporary file and raises."""
    tmp = tmp or path + ".tmp"
    try:
        os.unlink(tmp, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        write_all(fd, data)
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        with contextlib.suppress(OSError):  # gone already: the first error is the one to tell
            os.unlink(tmp, dir_fd=dir_fd)  # the file it was to replace stays as it was
        raise
    finally:
        os.close(fd)
    os.rename(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def replace_json(path: str, obj, **dump) -> None:
    """A root-only JSON file of the agent's, replaced whole (replace_file)."""
    replace_file(path, json.dumps(obj, **dump).encode())


# Limits that every Linux node leaves unlimited (the kernel's and systemd's defaults), so the
# rule needs nothing read from the node: a user's server and the agent's run get them
# unlimited. sudo passes the caller's limits on; a lower one is the provisioning account's.
UNLIMITED_RESOURCES = {
    "fsize": resource.RLIMIT_FSIZE,  # cuts the agent's files and a notebook's short
    "cpu": resource.RLIMIT_CPU,  # kills the agent, or a user's kernel, after N CPU seconds
    "data": resource.RLIMIT_DATA,
    "as": resource.RLIMIT_AS,  # CUDA reserves far more address space than it uses
}


def lift_limits() -> None:
    """Each of UNLIMITED_RESOURCES to unlimited; where root cannot raise a hard limit (no
    CAP_SYS_RESOURCE, as in some containers) the soft one at least to the hard one, which needs
    no privilege. What stays limited: limited_resources()."""
    for res in UNLIMITED_RESOURCES.values():
        try:
            resource.setrlimit(res, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            hard = resource.getrlimit(res)[1]
            try:
                resource.setrlimit(res, (hard, hard))
            except (ValueError, OSError):
                pass


def clean_process_state() -> None:
    """What sudo passes on from the caller besides limits, reset to the node's defaults for the
    agent's run and the user's server it starts: the umask (a narrow one made a user's
    ~/.jupyter unusable for good, and jupyter_run_dir closed to every user), the nice value and
    the CPU affinity (PID 1's). Not reset: the I/O priority class and ignored signals."""
    os.umask(0o022)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    try:
        os.sched_setaffinity(0, os.sched_getaffinity(1))
    except OSError:
        pass


def limited_resources() -> list:
    """The names of UNLIMITED_RESOURCES that are limited in this process (soft or hard)."""
    infinite = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    return [name for name, res in UNLIMITED_RESOURCES.items() if resource.getrlimit(res) != infinite]


def run(args: list, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AgentError("command_failed", f"{args[0]} exited {result.returncode}: {result.stderr.strip()[:500]}")
    return result


def _managed_name(config: dict, name, kind: str) -> str:
    """Only names of the portal's exact form: PREFIX + digits (accounts) or PREFIX + g + digits
    (grant labels, which name a grant in the agent's records; no unix group carries them).
    Anything else on the node (the provisioning account, operators, system
    accounts) is out of reach whatever it is called."""
    suffix = r"[0-9]{1,12}" if kind == "account" else r"g[0-9]{1,12}"
    if not isinstance(name, str) or not re.fullmatch(re.escape(config["account_prefix"]) + suffix, name):
        raise AgentError("bad_username", f"not a name the portal manages: {name!r}"[:200])
    return name


def _record_path(config: dict, kind: str, name: str) -> str:
    directory = os.path.join(state_dir(config), kind)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return os.path.join(directory, name + ".json")


def _read_record(config: dict, kind: str, name: str) -> dict:
    try:
        with open(_record_path(config, kind, name)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def _write_record(config: dict, kind: str, name: str, record: dict) -> None:
    """The marker: a root-only file the agent writes when it creates an account or group."""
    replace_json(_record_path(config, kind, name), record)


def managed_user(config: dict, username: str, must_exist: bool = True):
    """The passwd entry of an account the agent created, or None when no such account exists.
    An account of the right name that the agent did not create (no marker, another uid, not in
    the managed group) is refused: it may be an operator's or an attacker's."""
    _managed_name(config, username, "account")
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        if must_exist:
            raise AgentError("no_such_user", f"{username} does not exist") from None
        return None
    record = _read_record(config, "accounts", username)
    if entry.pw_uid < MIN_UID or record.get("uid") != entry.pw_uid or record.get("state") == "creating":
        raise AgentError("not_managed", f"{username} exists but was not created by the portal")
    try:
        members = grp.getgrnam(config["managed_group"]).gr_mem
    except KeyError:
        members = []
    if username not in members:
        raise AgentError("not_managed", f"{username} is not in the managed group")
    return entry


def root_only(path: str) -> bool:
    """`path` and every folder above it are owned by root and writable by root alone: nothing
    found there can have been put there by anyone else."""
    path = os.path.realpath(path)
    while True:
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & 0o022:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def system_site_packages() -> None:
    """The agent runs without the `site` module (`python3 -IS`: no `.pth` file of any
    site-packages folder runs as root); its one optional import, pynvml, is looked for in the
    system's site-packages folders that only root can write."""
    import site

    for folder in site.getsitepackages():
        if folder not in sys.path and root_only(folder):
            sys.path.append(folder)


def nvml_started():
    """pynvml, initialised: the caller shuts it down (nvmlShutdown) in a `finally`. Optional
    (nvidia-ml-py, in a root-only system site-packages folder): a node without it answers
    nvml_missing, one without a driver nvml_unavailable."""
    system_site_packages()
    try:
        import pynvml
    except ImportError as exc:
        raise AgentError("nvml_missing", "pynvml (nvidia-ml-py) is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise AgentError("nvml_unavailable", str(exc)) from exc
    return pynvml


def state_dir(config: dict) -> str:
    path = config["state_dir"]
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def valid_gpus(value) -> str:
    if not isinstance(value, list) or not all(isinstance(g, str) and GPU_ID_RE.fullmatch(g) for g in value):
        raise AgentError("bad_gpus", "gpus must be a list of GPU UUIDs or indices")
    return ",".join(value)
