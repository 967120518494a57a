#!/usr/bin/python3
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
the operator's credential, and sudo allows the provisioning account only the verbs below.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

VERSION = "2.2"
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


def load_config() -> dict:
    config = dict(DEFAULT_CONFIG)
    try:
        with open(CONFIG_PATH) as f:
            config.update(json.load(f))
    except FileNotFoundError:
        pass
    return config


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
    path = _record_path(config, kind, name)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.rename(path + ".tmp", path)


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


def open_dir_nofollow(path: str, dir_fd=None) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def ssh_dir_fd(entry) -> int:
    """~/.ssh as a directory fd, created if missing. A symlinked home or ~/.ssh is refused:
    root must never write through a link the user controls."""
    try:
        home_fd = open_dir_nofollow(entry.pw_dir)
    except OSError as exc:
        raise AgentError("unsafe_home", f"home of {entry.pw_name} is not a plain directory") from exc
    try:
        try:
            os.mkdir(".ssh", 0o700, dir_fd=home_fd)
        except FileExistsError:
            pass
        st = os.stat(".ssh", dir_fd=home_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise AgentError("unsafe_ssh_dir", "~/.ssh is not a directory")
        fd = open_dir_nofollow(".ssh", dir_fd=home_fd)
        os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.fchmod(fd, 0o700)
        return fd
    finally:
        os.close(home_fd)


def write_user_file(entry, name: str, content: str) -> None:
    """Write ~/.ssh/NAME atomically (temp file + rename) without following links."""
    dfd = ssh_dir_fd(entry)
    tmp = f".{name}.gpu-portal.tmp"
    try:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dfd)
        try:
            os.write(fd, content.encode())
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
            os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def remove_user_file(entry, name: str) -> bool:
    """Remove ~/.ssh/NAME if it is there. The user controls the folder (a directory of that
    name, a missing folder): nothing in it may make a revocation fail, so any error counts as
    nothing removed."""
    try:
        dfd = open_dir_nofollow(os.path.join(entry.pw_dir, ".ssh"))
    except OSError:
        return False
    try:
        os.unlink(name, dir_fd=dfd)
        return True
    except OSError:
        return False
    finally:
        os.close(dfd)


def read_user_file(entry, name: str):
    """~/.ssh/NAME as text, or None. The user controls this file: it is opened without
    following links and without blocking (a FIFO would hang root forever), must be a regular
    file and small; anything else counts as absent."""
    try:
        dfd = os.open(os.path.join(entry.pw_dir, ".ssh"), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_size > MAX_USER_FILE
            or st.st_uid != entry.pw_uid  # a hard link to someone else's file is not the user's
            or st.st_nlink != 1
        ):
            return None
        data = os.read(fd, MAX_USER_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_USER_FILE:
        return None
    return data.decode(errors="replace")


def shadow_entry(username: str) -> list:
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == username:
                return fields
    return []


def user_processes(uid: int) -> dict:
    """{pid: command name} of the live (not zombie) processes whose real, effective or saved
    uid is `uid`."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        uid_line = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M)
        state = re.search(r"^State:\s+(\w)", status, re.M)
        command = re.search(r"^Name:\s+(.*)$", status, re.M)
        if uid_line and uid in {int(u) for u in uid_line.groups()} and not (state and state.group(1) == "Z"):
            found[int(name)] = command.group(1)[:32] if command else "?"
    return found


def user_pids(uid: int) -> list:
    return sorted(user_processes(uid))


def kill_all_processes(entry) -> list:
    """End every process of the account, including whatever it forks meanwhile. A listing of
    /proc is stale the moment it is read (a fork-and-exit loop outruns it), so a child that
    has become the user sends SIGKILL to everything it may signal (`kill(-1)`: every process of
    that uid) until the kernel answers that nothing is left. Returns what was running."""
    before = user_processes(entry.pw_uid)
    for _round in range(100):
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child
            code = 2
            try:
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
                code = 1
                for _ in range(2000):
                    os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                code = 0  # nothing of this uid is left to signal
            except BaseException:  # noqa: BLE001, S110 - a child must never return into the agent
                pass
            os._exit(code)
        _pid, status = os.waitpid(child, 0)
        if os.waitstatus_to_exitcode(status) == 2:
            raise AgentError("kill_failed", "could not switch to the account to end its processes")
        if not user_processes(entry.pw_uid):
            return [{"pid": pid, "command": name} for pid, name in sorted(before.items())]
        time.sleep(0.05)  # only zombies waiting for their parent, or a process still dying
    raise AgentError("processes_remain", f"processes of {entry.pw_name} survive SIGKILL")


def state_dir(config: dict) -> str:
    path = config["state_dir"]
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def jupyter_state_path(config: dict, username: str, name: str) -> str:
    """One state file per user and session: `.` is in neither a user name nor a session name,
    so two sessions (two grants of one user) never share a file."""
    return os.path.join(state_dir(config), f"jupyter-{username}.{name}.json")


def pid_alive(pid: int, uid: int) -> bool:
    try:
        st = os.stat(f"/proc/{pid}")
    except OSError:
        return False
    if st.st_uid != uid:
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except OSError:
        return False


def socket_answers(path: str, uid: int) -> bool:
    """A unix socket of `uid` at `path` accepts connections (a link or someone else's is no answer)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != uid:
        return False
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.5)
        return s.connect_ex(path) == 0


def valid_session_name(value) -> str:
    if not isinstance(value, str) or not SESSION_RE.fullmatch(value):
        raise AgentError("bad_session", "session must be 1-32 lower-case letters, digits or dashes")
    return value


def valid_gpus(value) -> str:
    if not isinstance(value, list) or not all(isinstance(g, str) and GPU_ID_RE.fullmatch(g) for g in value):
        raise AgentError("bad_gpus", "gpus must be a list of GPU UUIDs or indices")
    return ",".join(value)


# -- verbs ------------------------------------------------------------------------------------


def verb_version(data: dict, config: dict) -> dict:
    return {"version": VERSION}


def verb_inventory(data: dict, config: dict) -> dict:
    """The node's GPUs as NVML reports them (or a recorded NVML answer, for nodes without GPUs
    in tests: config nvml_replay)."""
    if config.get("nvml_replay"):
        with open(config["nvml_replay"]) as f:
            recorded = json.load(f)
        devices, driver = recorded["devices"], recorded.get("driver_version", "")
    else:
        try:
            import pynvml
        except ImportError as exc:
            raise AgentError("nvml_missing", "pynvml (nvidia-ml-py) is not installed") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise AgentError("nvml_unavailable", str(exc)) from exc
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            devices = []
            for i in range(pynvml.nvmlDeviceGetCount()):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                devices.append(
                    {
                        "index": i,
                        "name": pynvml.nvmlDeviceGetName(h),
                        "uuid": pynvml.nvmlDeviceGetUUID(h),
                        "memory_total": pynvml.nvmlDeviceGetMemoryInfo(h).total,
                        "minor_number": pynvml.nvmlDeviceGetMinorNumber(h),
                    }
                )
        finally:
            pynvml.nvmlShutdown()
    gpus = [
        {
            "index": int(d["index"]),
            "uuid": d["uuid"],
            "name": d["name"],
            "memory_mib": int(d["memory_total"]) // (1024 * 1024),
            # /dev/nvidiaN is numbered by the minor number, which need not equal the index.
            "minor": int(d.get("minor_number", d["index"])),
        }
        for d in devices
    ]
    return {"driver_version": driver, "gpus": gpus}


def valid_id(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not MIN_UID <= value <= MAX_ID:
        raise AgentError("bad_id", f"{what} must be an integer between {MIN_UID} and {MAX_ID}")
    return value


def portal_uid(config: dict, value) -> int:
    """A uid of the portal's own range (the installer writes id_min and id_max from the
    portal's settings): whoever holds the provisioning key cannot become any other uid of the
    node, e.g. the owner of orphaned files on a shared filesystem."""
    uid = valid_id(value, "uid")
    low, high = config.get("id_min"), config.get("id_max")
    if not isinstance(low, int) or not isinstance(high, int) or not MIN_UID <= low <= high:
        raise AgentError("no_id_range", "the agent's configuration has no id range (id_min, id_max): reinstall it")
    if not low <= uid <= high:
        raise AgentError("uid_out_of_range", f"uid {uid} is outside the portal's range {low}-{high}")
    return uid


def _holder(lookup, number: int):
    try:
        return lookup(number)
    except KeyError:
        return None


def verb_ensure_account(data: dict, config: dict) -> dict:
    """Create the account with the uid the portal allocated (the same on every node, so files
    on a shared filesystem keep their owner) and its private group of the same id. A uid or
    group id already used by someone else on this node is refused, never papered over.

    Idempotent even after a run that died half way: an intent record {uid, state: creating} is
    written before groupadd/useradd, and a retry accepts a group or account whose name AND uid
    match that intent, then finishes (managed group, final marker)."""
    username = _managed_name(config, data.get("username"), "account")
    uid = portal_uid(config, data.get("uid"))
    expires = data.get("expires_on", "")
    if not isinstance(expires, str) or not DATE_RE.fullmatch(expires):
        raise AgentError("bad_date", "expires_on must be YYYY-MM-DD")
    record = _read_record(config, "accounts", username)
    resuming = record.get("state") == "creating" and record.get("uid") == uid
    entry = None if resuming else managed_user(config, username, must_exist=False)
    created = entry is None
    if created:
        if not resuming:
            if record and record.get("uid") != uid:
                raise AgentError("not_managed", f"{username} has a record for another uid on this node")
            # The same name and uid as recorded: an account removed behind the agent's back
            # (a wiped node) is made again.
            for lookup, what in ((pwd.getpwuid, "uid"), (grp.getgrgid, "group id")):
                holder = _holder(lookup, uid)
                if holder is not None:
                    raise AgentError("uid_taken", f"{what} {uid} already belongs to {holder[0]} on this node")
            for lookup in (pwd.getpwnam, grp.getgrnam):
                if _holder(lookup, username) is not None:
                    raise AgentError("uid_taken", f"an account or group named {username} already exists on this node")
            _write_record(config, "accounts", username, {"uid": uid, "state": "creating"})
        _finish_account(config, username, uid, expires)
        entry = managed_user(config, username)
    elif entry.pw_uid != uid:
        raise AgentError("uid_mismatch", f"{username} has uid {entry.pw_uid} on this node, not {uid}")
    # '*' = no password but not locked: key logins work (a '!' account is refused without PAM).
    run(["usermod", "-p", "*", "-e", expires, "--", username])
    return {"created": created, "uid": entry.pw_uid, "home": entry.pw_dir}


def _finish_account(config: dict, username: str, uid: int, expires: str) -> None:
    """groupadd, useradd and the final marker, each skipped when the intent's earlier run did
    it: a group or account is accepted only with exactly the intended name and id."""
    group = _holder(grp.getgrnam, username)
    if group is None:
        if _holder(grp.getgrgid, uid) is not None:
            raise AgentError("uid_taken", f"group id {uid} is taken on this node")
        run(["groupadd", "-g", str(uid), "--", username])
    elif group.gr_gid != uid:
        raise AgentError("uid_taken", f"group {username} exists with gid {group.gr_gid}, not {uid}")
    account = _holder(pwd.getpwnam, username)
    if account is None:
        if _holder(pwd.getpwuid, uid) is not None:
            raise AgentError("uid_taken", f"uid {uid} is taken on this node")
        run(
            ["useradd", "-m", "-u", str(uid), "-g", str(uid), "-G", config["managed_group"], "-s", config["shell"],
             "-K", "HOME_MODE=0700", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", "-e", expires, "--", username]
        )  # fmt: skip
    elif account.pw_uid != uid or account.pw_gid != uid:
        raise AgentError("uid_taken", f"account {username} exists with uid {account.pw_uid}, not {uid}")
    else:
        run(["usermod", "-a", "-G", config["managed_group"], "--", username])
    _write_record(config, "accounts", username, {"uid": uid, "created_at": int(time.time())})


def keys_path(config: dict, username: str) -> str:
    """The root-owned key file sshd reads for a managed account (the installer's sshd drop-in):
    nothing in the home directory (authorized_keys2, a symlink, a file the user wrote) counts."""
    directory = config["keys_dir"]
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise AgentError("unsafe_keys_dir", f"{directory} must be a root-owned directory nobody else can write")
    return os.path.join(directory, username)


def verb_set_keys(data: dict, config: dict) -> dict:
    entry = managed_user(config, data.get("username"))
    keys = data.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) and KEY_RE.fullmatch(k) for k in keys):
        raise AgentError("bad_keys", "keys must be a list of bare public keys, one per entry")
    content = "".join(k + "\n" for k in keys)
    path = keys_path(config, entry.pw_name)
    # root:<the user's private group> 0640: sshd reads it as the user; nobody else can.
    with open(path + ".tmp", "w") as f:
        f.write(content)
        os.fchown(f.fileno(), 0, entry.pw_gid)
        os.fchmod(f.fileno(), 0o640)
    os.rename(path + ".tmp", path)
    return {"count": len(keys), "sha256": hashlib.sha256(content.encode()).hexdigest()}


def read_keys(config: dict, username: str):
    try:
        with open(keys_path(config, username)) as f:
            return f.read()
    except FileNotFoundError:
        return None


def verb_set_gpus(data: dict, config: dict) -> dict:
    """CUDA_VISIBLE_DEVICES for SSH sessions (sshd PermitUserEnvironment) and Jupyter: the
    union of the user's live grants on this node. A convenience, not isolation (the device
    files' per-uid ACLs are); where systemd runs with cgroup v2, the user's slice also gets a
    DeviceAllow list of the same GPUs, a second fence."""
    entry = managed_user(config, data.get("username"))
    visible = valid_gpus(data.get("gpus"))
    write_user_file(entry, "environment", f"CUDA_VISIBLE_DEVICES={visible}\n")
    devices = gpu_devices(config)
    command = device_cgroup_command(entry.pw_uid, [devices[u] for u in data["gpus"] if u in devices], config)
    if command and systemd_with_cgroup2():
        run(command)
        return {"cuda_visible_devices": visible, "device_cgroup": "set"}
    return {"cuda_visible_devices": visible, "device_cgroup": "unavailable"}


def systemd_with_cgroup2() -> bool:
    return os.path.isdir("/run/systemd/system") and os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def device_cgroup_command(uid: int, gpu_paths: list, config: dict) -> list:
    """`systemctl set-property` for the user's slice: the empty DeviceAllow= first resets the
    list, then the GPUs the user may use, the driver's shared control files and the extra
    devices a GPU job needs (RDMA, FUSE: config device_allow_extra). systemd's "auto" policy
    keeps /dev/null, /dev/zero, ttys and the like."""
    if not config.get("device_cgroup", True):
        return []
    allowed = [f"{path} rw" for path in gpu_paths]
    allowed += [f"{path} rw" for path in config.get("device_allow_shared", DEVICE_ALLOW_SHARED)]
    allowed += list(config.get("device_allow_extra", DEVICE_ALLOW_EXTRA))
    return ["systemctl", "set-property", "--runtime", f"user-{uid}.slice", "DevicePolicy=auto", "DeviceAllow=",
            *[f"DeviceAllow={rule}" for rule in allowed]]  # fmt: skip


# -- Jupyter: one JupyterLab per user and session (grant), on a unix socket only the user reaches


def jupyter_socket_dir(config: dict, entry) -> str:
    """<jupyter_run_dir>/<user>: made by root, owned by the user, mode 0700, so only the user
    (and root) can reach the sockets in it: no port space shared with other users. The parent
    is root's and not writable by others, so the user cannot swap their directory for a link;
    it is made and checked through directory fds, never following a link."""
    base = config["jupyter_run_dir"]
    os.makedirs(base, mode=0o755, exist_ok=True)
    try:
        base_fd = open_dir_nofollow(base)
    except OSError as exc:
        raise AgentError("unsafe_run_dir", f"{base} is not a plain directory") from exc
    try:
        st = os.fstat(base_fd)
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise AgentError("unsafe_run_dir", f"{base} must belong to root and be writable by root only")
        try:
            os.mkdir(entry.pw_name, 0o700, dir_fd=base_fd)
        except FileExistsError:
            pass
        try:
            fd = open_dir_nofollow(entry.pw_name, dir_fd=base_fd)
        except OSError as exc:
            raise AgentError("unsafe_run_dir", f"{base}/{entry.pw_name} is not a plain directory") from exc
        try:
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    finally:
        os.close(base_fd)
    return os.path.join(base, entry.pw_name)


def read_jupyter_state(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {}


def jupyter_state_files(config: dict, username: str) -> dict:
    """Session name → state file of every Jupyter the agent started for the user. "" is a
    server of the earlier agent (one per user, on a TCP port), stopped like the others."""
    directory = state_dir(config)
    prefix = f"jupyter-{username}."
    found = {}
    for file in os.listdir(directory):
        if file == f"jupyter-{username}.json":
            found[""] = os.path.join(directory, file)
        elif file.startswith(prefix) and file.endswith(".json"):
            found[file[len(prefix) : -len(".json")]] = os.path.join(directory, file)
    return found


def stop_jupyter_state(entry, path: str) -> bool:
    """Stop the server a state file records (its whole process group, kernels included),
    remove its socket and the file."""
    state = read_jupyter_state(path)
    stopped = False
    pid = state.get("pid")
    if pid and pid_alive(pid, entry.pw_uid):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(50):
            if not pid_alive(pid, entry.pw_uid):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stopped = True
    for stale in (state.get("socket"), path):
        if stale:  # unlink never follows a link; the socket's folder is the user's own
            try:
                os.unlink(stale)
            except OSError:  # a directory the user put there must not stop a revocation
                pass
    return stopped


def stop_jupyter(config: dict, entry) -> bool:
    """Stop every Jupyter of the user (revoke)."""
    stopped = False
    for path in jupyter_state_files(config, entry.pw_name).values():
        stopped = stop_jupyter_state(entry, path) or stopped
    return stopped


def jupyter_report(config: dict, entry) -> dict:
    """Session name → whether its server is alive and answers on its socket."""
    report = {}
    for name, path in jupyter_state_files(config, entry.pw_name).items():
        state = read_jupyter_state(path)
        sock = state.get("socket", "")
        alive = pid_alive(state.get("pid", 0), entry.pw_uid) and bool(sock) and socket_answers(sock, entry.pw_uid)
        report[name] = {"running": alive, "socket": sock}
    return report


def verb_start_jupyter(data: dict, config: dict) -> dict:
    """Start JupyterLab for one session (a grant) as the user, on a unix socket in the user's
    0700 folder, with that grant's GPUs. A server of this session already running with this
    token is kept (a retried task); any other is stopped first, so a new token always means a
    new server and an old token never outlives its server. Other sessions are not touched."""
    entry = managed_user(config, data.get("username"))
    name = valid_session_name(data.get("session"))
    token = data.get("token")
    if not isinstance(token, str) or not TOKEN_RE.fullmatch(token):
        raise AgentError("bad_token", "token must be 32-128 URL-safe characters")
    visible = valid_gpus(data.get("gpus", []))
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    sock = os.path.join(jupyter_socket_dir(config, entry), f"{name}.sock")
    state_path = jupyter_state_path(config, entry.pw_name, name)
    state = read_jupyter_state(state_path)
    if (
        state.get("socket") == sock
        and state.get("token_sha256") == token_hash
        and pid_alive(state.get("pid", 0), entry.pw_uid)
        and socket_answers(sock, entry.pw_uid)
    ):
        return {"pid": state["pid"], "socket": sock, "already_running": True}
    stop_jupyter_state(entry, state_path)
    legacy = jupyter_state_files(config, entry.pw_name).get("")
    if legacy:
        stop_jupyter_state(entry, legacy)
    try:
        os.unlink(sock)  # whatever the user left there; never followed
    except FileNotFoundError:
        pass
    except OSError as exc:  # a directory the user made at the socket's path
        raise AgentError("socket_path_taken", f"{sock} is taken by something that is not a socket: remove it") from exc
    log = open_user_log(entry, os.path.dirname(sock), f"{name}.log")
    env = {
        "HOME": entry.pw_dir,
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": entry.pw_shell,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "JUPYTER_TOKEN": token,  # never on the command line, where `ps` shows it
        "CUDA_VISIBLE_DEVICES": visible,
    }
    try:
        proc = subprocess.Popen(
            [config["jupyter_bin"], "lab", "--no-browser", f"--ServerApp.sock={sock}", "--ServerApp.sock_mode=0600",
             f"--ServerApp.root_dir={entry.pw_dir}"],
            # Only the user's own groups: access to GPUs is per uid (device ACLs), never a group.
            user=entry.pw_uid, group=entry.pw_gid, extra_groups=os.getgrouplist(entry.pw_name, entry.pw_gid),
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            close_fds=True, cwd=entry.pw_dir, env=env,
        )  # fmt: skip
        with open(state_path, "w") as f:
            json.dump({"pid": proc.pid, "socket": sock, "token_sha256": token_hash}, f)
        deadline = time.monotonic() + float(data.get("wait_seconds", 60))
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AgentError("jupyter_exited", f"jupyter exited with {proc.returncode}: {log_tail(log)}")
            if socket_answers(sock, entry.pw_uid):
                return {"pid": proc.pid, "socket": sock, "already_running": False}
            time.sleep(0.2)
        raise AgentError("jupyter_timeout", f"jupyter did not answer on {sock} in time: {log_tail(log)}")
    finally:
        os.close(log)


def open_user_log(entry, folder: str, name: str) -> int:
    """The server's stdout/stderr (inherited by its kernels): a file the USER owns in their own
    socket folder, so that filesystem's size limit and quota apply to whatever a notebook
    writes, never a root-owned file. Made fresh by root through a directory fd (O_EXCL,
    O_NOFOLLOW: never a link or a file the user planted) and given to the user."""
    try:
        dfd = open_dir_nofollow(folder)
    except OSError as exc:
        raise AgentError("unsafe_run_dir", f"{folder} is not a plain directory") from exc
    try:
        if os.fstat(dfd).st_uid != entry.pw_uid:
            raise AgentError("unsafe_run_dir", f"{folder} does not belong to {entry.pw_name}")
        try:
            os.unlink(name, dir_fd=dfd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise AgentError("log_path_taken", f"{folder}/{name} is taken by something that is not a file") from exc
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_APPEND, 0o600, dir_fd=dfd)
        except OSError as exc:
            raise AgentError("log_path_taken", f"{folder}/{name} could not be created: {exc}") from exc
        os.fchown(fd, entry.pw_uid, entry.pw_gid)
        return fd
    finally:
        os.close(dfd)


def log_tail(fd: int, limit: int = 2000) -> str:
    """The last `limit` bytes of the server's log, read through the agent's own descriptor."""
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, limit, max(size - limit, 0)).decode(errors="replace").strip()
    except OSError:
        return "(no log)"


def verb_stop_jupyter(data: dict, config: dict) -> dict:
    entry = managed_user(config, data.get("username"), must_exist=False)
    name = valid_session_name(data.get("session"))
    if entry is None:
        return {"stopped": False}
    return {"stopped": stop_jupyter_state(entry, jupyter_state_path(config, entry.pw_name, name))}


def verb_revoke(data: dict, config: dict) -> dict:
    """Lock the account and end every process first, then remove its keys and Jupyter state;
    keep the home. Nothing the user controls (their home, their socket folder) is touched
    before the kill, and a cleanup that fails there is reported, never allowed to skip it."""
    entry = managed_user(config, data.get("username"), must_exist=False)
    if entry is None:
        return {"existed": False, "killed": 0, "processes": []}
    # Locked and keyless first, so no new login races the kill; then everything it runs,
    # whatever it forks.
    problems = []
    try:
        run(["usermod", "-L", "-e", "1", "--", entry.pw_name])
    except (OSError, AgentError, subprocess.SubprocessError) as exc:  # reported; the kill runs anyway
        problems.append(f"lock: {exc}")
    try:
        os.unlink(keys_path(config, entry.pw_name))
    except FileNotFoundError:
        pass
    except (OSError, AgentError) as exc:
        problems.append(f"keys: {exc}")
    killed = kill_all_processes(entry)
    for what, cleanup in (
        ("jupyter", lambda: stop_jupyter(config, entry)),
        ("authorized_keys", lambda: remove_user_file(entry, "authorized_keys")),
        ("environment", lambda: remove_user_file(entry, "environment")),
    ):
        try:
            cleanup()
        except (OSError, AgentError) as exc:
            problems.append(f"{what}: {exc}")
    if problems and problems[0].startswith("lock:"):
        raise AgentError("lock_failed", f"processes ended, but the account could not be locked: {problems[0]}")
    return {"existed": True, "killed": len(killed), "processes": killed, "cleanup_problems": problems}


def verb_status(data: dict, config: dict) -> dict:
    """What the node has for each account the portal asks about."""
    accounts = {}
    for username in data.get("usernames", []):
        entry = managed_user(config, username, must_exist=False)
        if entry is None:
            accounts[username] = {"exists": False}
            continue
        shadow = shadow_entry(username)
        keys = read_keys(config, username)
        env = read_user_file(entry, "environment") or ""
        accounts[username] = {
            "exists": True,
            "uid": entry.pw_uid,
            "locked": bool(shadow) and shadow[1].startswith("!"),
            "expiry_days": shadow[7] if len(shadow) > 7 else "",
            "keys_sha256": hashlib.sha256(keys.encode()).hexdigest() if keys else None,
            "cuda_visible_devices": env.strip().partition("=")[2] or None,
            "jupyter": jupyter_report(config, entry),
            "processes": len(user_pids(entry.pw_uid)),
        }
    grants = {}
    for label, wanted in (data.get("grants") or {}).items():
        grants[label] = grant_status(config, label, wanted)
    return {"accounts": accounts, "grants": grants, "version": VERSION}


# -- GPU isolation: each GPU's device file lets exactly the current members' uids in ----------
#
# root:root 0600 plus a POSIX ACL (user:UID:rw per member, mask rw). Nothing a process keeps
# (a supplementary group, a setgid copy of a program) opens it after the ACL changes: the kernel
# checks the uid at every open. The ACL is written as the kernel's binary xattr, as udev's
# uaccess does, so no `acl` package is needed.

ACL_XATTR = "system.posix_acl_access"
ACL_VERSION = 2
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
RW = 6


def acl_bytes(uids) -> bytes:
    """The xattr value: header (version, u32 LE), then (tag u16, perm u16, id u32) entries
    sorted by tag, then id."""
    entries = [(ACL_USER_OBJ, RW, ACL_UNDEFINED_ID)]
    entries += [(ACL_USER, RW, uid) for uid in sorted(set(uids))]
    entries += [(ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID), (ACL_MASK, RW, ACL_UNDEFINED_ID)]
    entries.append((ACL_OTHER, 0, ACL_UNDEFINED_ID))
    return struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def acl_uids(value: bytes):
    """The uids a binary ACL lets read and write the file, or None when it is not one the
    agent writes (another shape: a group entry, other permissions)."""
    if len(value) < 4 or (len(value) - 4) % 8 or struct.unpack_from("<I", value)[0] != ACL_VERSION:
        return None
    uids = []
    for offset in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, offset)
        if tag == ACL_USER:
            if perm != RW:
                return None
            uids.append(ident)
        elif tag in (ACL_GROUP_OBJ, ACL_OTHER) and perm != 0:
            return None
        elif tag not in (ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER):
            return None
    return sorted(uids)


def gpu_devices(config: dict) -> dict:
    """{GPU UUID: device file} from NVML (or its recorded answer)."""
    return {
        gpu["uuid"]: config["gpu_device_pattern"].format(minor=gpu["minor"], index=gpu["index"])
        for gpu in verb_inventory({}, config)["gpus"]
    }


def _device_fd(path: str) -> int:
    """An O_PATH handle on a GPU's device file; a link or anything but a character device is
    refused, so root never changes the owner of some other file."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)
    if not stat.S_ISCHR(os.fstat(fd).st_mode):
        os.close(fd)
        raise AgentError("bad_device", f"{path} is not a character device")
    return fd


def set_device_access(path: str, uids) -> None:
    """root:root 0600, plus read/write for exactly `uids` (none: no ACL at all)."""
    fd = _device_fd(path)
    handle = f"/proc/self/fd/{fd}"
    try:
        os.chown(handle, 0, 0)
        if uids:
            os.setxattr(handle, ACL_XATTR, acl_bytes(uids))
        else:
            try:
                os.removexattr(handle, ACL_XATTR)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                    raise
            os.chmod(handle, 0o600)
    finally:
        os.close(fd)


def device_access(path: str):
    """The uids the device's ACL lets in ([] for a closed device), or None when the file is not
    as the agent leaves it (another owner, group or other bits, an ACL of another shape)."""
    try:
        st = os.lstat(path)
        value = os.getxattr(path, ACL_XATTR, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
            return None
        value = b""
    if not stat.S_ISCHR(st.st_mode) or st.st_uid != 0 or st.st_gid != 0 or st.st_mode & 0o007:
        return None
    if not value:
        return [] if stat.S_IMODE(st.st_mode) == 0o600 else None
    return acl_uids(value)


def _world_open(path: str) -> bool:
    """Open to everyone (a driver that rewrote it), or still owned by a group (a grant group of
    agent 2.0, before GPUs were given by uid): either way nobody holds it by the agent's record."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return bool(st.st_mode & 0o007) or st.st_gid != 0


def _grant_devices(config: dict, uuids) -> list:
    if not isinstance(uuids, list) or not all(isinstance(u, str) and GPU_ID_RE.fullmatch(u) for u in uuids):
        raise AgentError("bad_gpus", "gpus must be a list of GPU UUIDs")
    devices = gpu_devices(config)
    unknown = [u for u in uuids if u not in devices]
    if unknown:
        raise AgentError("unknown_gpu", f"this node has no GPU {unknown[0]}")
    return [devices[u] for u in uuids]


def _holdings_path(config: dict) -> str:
    return os.path.join(state_dir(config), "gpu-holdings.json")


def read_holdings(config: dict) -> dict:
    """{device file: grant label}: which grant the agent last gave each GPU (root-only)."""
    try:
        with open(_holdings_path(config)) as f:
            found = json.load(f)
    except (FileNotFoundError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_holdings(config: dict, holdings: dict) -> None:
    path = _holdings_path(config)
    with open(path + ".tmp", "w") as f:
        json.dump(holdings, f, sort_keys=True)
    os.rename(path + ".tmp", path)


def managed_uids(config: dict) -> set:
    """uids of the accounts the agent made (its marker records): the only processes the agent
    ever kills for holding a GPU. The node's own services (nvidia-persistenced, exporters) run
    as other users and are never touched."""
    directory = os.path.join(state_dir(config), "accounts")
    found = set()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return found
    for file in names:
        if file.endswith(".json"):
            uid = _read_record(config, "accounts", file[: -len(".json")]).get("uid")
            if isinstance(uid, int) and uid >= MIN_UID:
                found.add(uid)
    return found


def _real_uid(pid: str):
    try:
        with open(f"/proc/{pid}/status") as f:
            found = re.search(r"^Uid:\s+(\d+)", f.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def kill_device_holders(path: str, allowed: set, managed: set) -> list:
    """Kill the processes of managed accounts not in `allowed` that hold the device open, by
    whatever path they opened it (a bind mount in their own namespace, a copy of the device
    node): an open file is matched by its device number, never by its name."""
    try:
        rdev = os.stat(path).st_rdev
    except OSError:
        return []
    killed = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        uid = _real_uid(name)
        if uid is None or uid not in managed or uid in allowed:
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{name}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev:
                try:
                    os.kill(int(name), signal.SIGKILL)
                    killed.append(int(name))
                except ProcessLookupError:
                    pass
                break
    return killed


def _label(config: dict, data: dict) -> str:
    return _managed_name(config, data.get("grant"), "group")


def verb_grant_gpus(data: dict, config: dict) -> dict:
    """Let exactly the grant's current members (by uid) open exactly its GPUs: each device's
    ACL is set to the members' uids, GPUs this grant held before but not now are closed, and
    any process of a managed account no longer allowed that holds one is killed. A member
    whose account does not exist (yet) is left out and reported, never failing the others."""
    label = _label(config, data)
    members = data.get("members")
    if not isinstance(members, list):
        raise AgentError("bad_members", "members must be a list of account names")
    uids, missing = [], []
    for member in members:
        try:
            entry = managed_user(config, member, must_exist=False)
        except AgentError:  # not an account the agent made: it gets nothing, the others do
            entry = None
        if entry is None:
            missing.append(member)
        else:
            uids.append(entry.pw_uid)
    paths = _grant_devices(config, data.get("gpus"))
    managed = managed_uids(config)
    holdings = read_holdings(config)
    killed = []
    for path, holder in sorted(holdings.items()):
        if holder == label and path not in paths:  # the grant moved off this GPU
            set_device_access(path, [])
            killed += kill_device_holders(path, set(), managed)
            del holdings[path]
    for path in paths:
        holdings[path] = label
    write_holdings(config, holdings)
    for path in paths:
        set_device_access(path, uids)
        killed += kill_device_holders(path, set(uids), managed)
    return {"grant": label, "devices": paths, "uids": sorted(uids), "missing": missing, "killed": killed}


def verb_release_gpus(data: dict, config: dict) -> dict:
    """Take the grant's GPUs back (root:root 0600, no ACL) and kill the processes of managed
    accounts that still hold them. Only GPUs this grant holds (or that are open to everyone: a
    driver rewrote them); one already given to another grant is left alone."""
    label = _label(config, data)
    paths = _grant_devices(config, data.get("gpus"))
    holdings = read_holdings(config)
    managed = managed_uids(config)
    killed = []
    for path in paths:
        if holdings.get(path) == label or _world_open(path):
            set_device_access(path, [])
            killed += kill_device_holders(path, set(), managed)
            if holdings.get(path) == label:
                del holdings[path]
    for path, holder in list(holdings.items()):
        if holder == label:  # a GPU the grant held that the portal no longer lists
            set_device_access(path, [])
            killed += kill_device_holders(path, set(), managed)
            del holdings[path]
    write_holdings(config, holdings)
    return {"grant": label, "devices": paths, "killed": killed}


def grant_status(config: dict, label: str, wanted) -> dict:
    """Whether the grant holds each of its GPUs and each device's ACL lets in exactly the given
    members' uids (accounts that do not exist are not counted)."""
    _managed_name(config, label, "group")
    gpus, members = (wanted.get("gpus"), wanted.get("members")) if isinstance(wanted, dict) else (wanted, [])
    try:
        paths = _grant_devices(config, gpus)
    except AgentError:  # a GPU the node no longer reports: the repair will say so
        return {"devices_ok": False, "held": False, "acl": {}}
    uids = []
    for member in members or []:
        try:
            entry = managed_user(config, member, must_exist=False)
        except AgentError:
            entry = None
        if entry is not None:
            uids.append(entry.pw_uid)
    holdings = read_holdings(config)
    acl = {path: device_access(path) for path in paths}
    return {
        "held": all(holdings.get(p) == label for p in paths),
        "acl": acl,
        "devices_ok": all(acl[p] == sorted(uids) and holdings.get(p) == label for p in paths),
    }


# -- metering: samples of every GPU, pushed to the portal ------------------------------------


def process_user(pid: int):
    """The unix user a process runs as (real uid), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            found = re.search(r"^Uid:\s+(\d+)", f.read(), re.M)
    except OSError:
        return None
    if not found:
        return None
    try:
        name = pwd.getpwuid(int(found.group(1))).pw_name
    except KeyError:
        return found.group(1)
    # The portal refuses a batch naming a user outside its rule (a directory name such as
    # 'LAB\\alice'): such a user is named by uid, so the batch, and the finding, still arrive.
    return name if SAMPLE_USER_RE.match(name) else found.group(1)


def _sample_device(device: dict) -> dict:
    """One GPU's sample from NVML's answers (live or replayed), in the portal's units:
    utilisation %, memory MiB, power W, temperature °C."""
    util = device.get("utilization") or {}
    memory = device.get("memory_info") or {}
    power_mw = device.get("power_usage")
    processes = []
    # The portal takes at most SAMPLE_MAX_PROCESSES per GPU and refuses the whole batch beyond:
    # a researcher starting hundreds of CUDA processes must not blind the node. The ones using
    # the most memory are kept, the rest counted.
    found = sorted(device.get("compute_processes") or [], key=lambda p: -(p.get("usedGpuMemory") or 0))
    for proc in found[:SAMPLE_MAX_PROCESSES]:
        pid = int(proc["pid"])
        used = proc.get("usedGpuMemory")
        processes.append(
            {
                "pid": pid,
                # A replay has no live process to ask: it may name the user it recorded.
                "user": process_user(pid) or proc.get("user"),
                "memory_mib": int(used) // (1024 * 1024) if used is not None else None,
            }
        )
    return {
        "uuid": device["uuid"],
        "index": int(device["index"]),
        "utilization": util.get("gpu"),
        "memory_utilization": util.get("memory"),
        "memory_used_mib": int(memory["used"]) // (1024 * 1024) if memory.get("used") is not None else None,
        "power_w": round(power_mw / 1000, 3) if power_mw is not None else None,
        "temperature_c": device.get("temperature"),
        "ecc_uncorrected": device.get("ecc_uncorrected_volatile"),
        "xid_errors": device.get("xid_errors"),
        "processes": processes,
        "processes_dropped": max(0, len(found) - SAMPLE_MAX_PROCESSES),
    }


def _nvml_optional(call, *args):
    """NVML answers NOT_SUPPORTED for what a GPU lacks (ECC on consumer boards, power on some):
    such a field is null, never a failed sample."""
    import pynvml

    try:
        return call(*args)
    except pynvml.NVMLError:
        return None


def _nvml_live_devices() -> list:
    try:
        import pynvml
    except ImportError as exc:
        raise AgentError("nvml_missing", "pynvml (nvidia-ml-py) is not installed") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise AgentError("nvml_unavailable", str(exc)) from exc
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = _nvml_optional(pynvml.nvmlDeviceGetUtilizationRates, h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            procs = _nvml_optional(pynvml.nvmlDeviceGetComputeRunningProcesses, h) or []
            devices.append(
                {
                    "index": i,
                    "uuid": pynvml.nvmlDeviceGetUUID(h),
                    "utilization": {"gpu": util.gpu, "memory": util.memory} if util else None,
                    "memory_info": {"total": mem.total, "free": mem.free, "used": mem.used},
                    "power_usage": _nvml_optional(pynvml.nvmlDeviceGetPowerUsage, h),
                    "temperature": _nvml_optional(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
                    "ecc_uncorrected_volatile": _nvml_optional(
                        pynvml.nvmlDeviceGetTotalEccErrors,
                        h,
                        pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                        pynvml.NVML_VOLATILE_ECC,
                    ),
                    # XIDs arrive only as NVML events, not as a counter: none are read here.
                    "xid_errors": None,
                    "compute_processes": [{"pid": p.pid, "usedGpuMemory": p.usedGpuMemory} for p in procs],
                }
            )
        return devices
    finally:
        pynvml.nvmlShutdown()


def verb_sample(data: dict, config: dict) -> dict:
    """Every GPU's utilisation, memory, power, temperature, errors and compute processes (with
    their unix user) now, from NVML or its recorded answer (config nvml_replay)."""
    if config.get("nvml_replay"):
        with open(config["nvml_replay"]) as f:
            devices = json.load(f)["devices"]
    else:
        devices = _nvml_live_devices()
    return {"time": round(time.time(), 3), "gpus": [_sample_device(d) for d in devices]}


def _spool_dir(config: dict) -> str:
    path = os.path.join(state_dir(config), "spool")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _spool_counters(config: dict) -> dict:
    try:
        with open(os.path.join(state_dir(config), "spool-counters.json")) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return {"dropped": 0, "rejected": 0}


def _save_spool_counters(config: dict, counters: dict) -> None:
    path = os.path.join(state_dir(config), "spool-counters.json")
    with open(path + ".tmp", "w") as f:
        json.dump(counters, f)
    os.rename(path + ".tmp", path)


def spool_batch(config: dict, batch: dict) -> None:
    """Keep a batch on disk until the portal has it; beyond spool_max batches the oldest are
    dropped (and counted), so a node cut off for weeks never fills its disk."""
    directory = _spool_dir(config)
    name = f"{int(batch['samples'][0]['time'] * 1000):015d}-{batch['batch_id']}.json"
    with open(os.path.join(directory, "." + name), "w") as f:
        json.dump(batch, f)
    os.rename(os.path.join(directory, "." + name), os.path.join(directory, name))
    queued = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    excess = len(queued) - max(1, int(config.get("spool_max", 1440)))
    if excess > 0:
        counters = _spool_counters(config)
        counters["dropped"] = counters.get("dropped", 0) + excess
        _save_spool_counters(config, counters)
        for stale in queued[:excess]:
            os.unlink(os.path.join(directory, stale))


def _post(url: str, token: str, body: bytes, timeout: float) -> tuple:
    import urllib.error
    import urllib.request

    if not url.startswith(("https://", "http://")):
        raise AgentError("push_unconfigured", "the push URL must be http(s)")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - URL from root's file
            return response.status, response.read(2000).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(2000).decode(errors="replace")


def verb_push(data: dict, config: dict) -> dict:
    """Sample now, queue the batch, then send every queued batch oldest first. A batch leaves
    the queue once the portal stored it (or already had it: a resend counts once there) or
    refused it for good (4xx, counted); a network error, 5xx, 401/403 or 429 keeps it for the
    next run. The URL and token come only from the root-only push file, never from stdin,
    so nobody can have the token sent elsewhere."""
    try:
        with open(config["push_config"]) as f:
            push = json.load(f)
        url, token = push["url"], push["token"]
    except (OSError, ValueError, KeyError) as exc:
        raise AgentError("push_unconfigured", f"cannot read {config['push_config']}: {exc}") from exc
    if data.get("sample", True):
        sample = verb_sample({}, config)
        batch = {
            "batch_id": hashlib.sha256(os.urandom(32)).hexdigest()[:32],
            "agent_version": VERSION,
            "samples": [{"time": sample["time"], "gpus": sample["gpus"]}],
        }
        spool_batch(config, batch)
    directory = _spool_dir(config)
    counters = _spool_counters(config)
    sent, kept, error = 0, 0, ""
    timeout = float(push.get("timeout", 20))
    # A long backlog is sent over several runs: this one stops in time for the next minute's.
    deadline = time.monotonic() + float(push.get("max_seconds", 50))
    queued = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    for index, name in enumerate(queued):
        if time.monotonic() > deadline:
            kept = len(queued) - index
            break
        path = os.path.join(directory, name)
        with open(path) as f:
            batch = json.load(f)
        batch["dropped_before"] = counters.get("dropped", 0)
        try:
            status, text = _post(url, token, json.dumps(batch).encode(), timeout)
        except OSError as exc:
            status, text = 0, str(exc)
        if 200 <= status < 300:
            os.unlink(path)
            sent += 1
            counters["dropped"] = 0  # the portal has heard about them now
            continue
        if 400 <= status < 500 and status not in (401, 403, 408, 429):
            os.unlink(path)  # refused for good: sending it again would be refused again
            counters["rejected"] = counters.get("rejected", 0) + 1
            error = f"{status}: {text[:300]}"
            continue
        kept = len(queued) - index
        error = f"{status or 'unreachable'}: {text[:300]}"
        break
    _save_spool_counters(config, counters)
    return {"sent": sent, "queued": kept, "dropped": counters.get("dropped", 0),
            "rejected": counters.get("rejected", 0), "error": error}  # fmt: skip


VERBS = {
    "version": verb_version,
    "sample": verb_sample,
    "push": verb_push,
    "inventory": verb_inventory,
    "status": verb_status,
    "ensure-account": verb_ensure_account,
    "set-keys": verb_set_keys,
    "set-gpus": verb_set_gpus,
    "start-jupyter": verb_start_jupyter,
    "stop-jupyter": verb_stop_jupyter,
    "revoke": verb_revoke,
    "grant-gpus": verb_grant_gpus,
    "release-gpus": verb_release_gpus,
}


def main(argv: list) -> int:
    def answer(obj: dict, code: int) -> int:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
        return code

    if len(argv) != 2 or argv[1] not in VERBS:
        return answer({"ok": False, "error": "bad_verb", "message": f"verbs: {', '.join(sorted(VERBS))}"}, 2)

    def too_long(_signum, _frame):
        raise AgentError("timeout", f"{argv[1]} did not finish in {VERB_TIMEOUT} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(VERB_TIMEOUT)
    try:
        raw = sys.stdin.read()
        data = json.loads(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise AgentError("bad_input", "input must be a JSON object")
        result = VERBS[argv[1]](data, load_config())
    except AgentError as exc:
        return answer({"ok": False, "error": exc.code, "message": exc.message}, 2)
    except ValueError as exc:
        return answer({"ok": False, "error": "bad_input", "message": str(exc)}, 2)
    except Exception as exc:  # noqa: BLE001 - answer in JSON whatever happens
        return answer({"ok": False, "error": "internal", "message": f"{type(exc).__name__}: {exc}"}, 3)
    return answer({"ok": True, **result}, 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
