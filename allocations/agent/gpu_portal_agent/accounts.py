"""Accounts with the uid the portal allocated, their keys (a root-owned file sshd reads), their
GPUs' environment and device cgroup, their revocation and their status."""

from __future__ import annotations

import errno
import grp
import hashlib
import os
import pwd
import stat
import subprocess
import time

from .common import (
    DATE_RE,
    DEVICE_ALLOW_EXTRA,
    DEVICE_ALLOW_SHARED,
    KEY_RE,
    MAX_ID,
    MIN_UID,
    VERSION,
    AgentError,
    _managed_name,
    _read_record,
    _write_record,
    managed_user,
    replace_file,
    run,
    valid_gpus,
)
from .devices import gpu_devices, grant_status
from .jupyter import jupyter_report, stop_jupyter
from .userland import kill_all_processes, read_user_file, remove_user_file, shadow_entry, user_pids, write_user_file


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
    replace_file(path, content.encode(), 0o640, (0, entry.pw_gid))
    return {"count": len(keys), "sha256": hashlib.sha256(content.encode()).hexdigest()}


def read_keys(config: dict, username: str):
    try:
        with open(keys_path(config, username)) as f:
            return f.read()
    except FileNotFoundError:
        return None


# What a user can do to their own home that stops ~/.ssh/environment being written.
USER_FOLDER_ERRORS = {"unsafe_home", "unsafe_ssh_dir"}


def verb_set_gpus(data: dict, config: dict) -> dict:
    """CUDA_VISIBLE_DEVICES for SSH sessions (sshd PermitUserEnvironment) and Jupyter: the
    union of the user's live grants on this node. A convenience, not isolation (the device
    files' per-uid ACLs are); where systemd runs with cgroup v2, the user's slice also gets a
    DeviceAllow list of the same GPUs, a second fence."""
    entry = managed_user(config, data.get("username"))
    visible = valid_gpus(data.get("gpus"))
    environment = "written"
    try:
        write_user_file(entry, "environment", f"CUDA_VISIBLE_DEVICES={visible}\n")
    except AgentError as exc:
        if exc.code not in USER_FOLDER_ERRORS:
            raise
        environment = f"not written: {exc.message}"
    except OSError as exc:
        if exc.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
            raise
        # The user's own ~/.ssh is in the way (a directory where the file goes, …): only their
        # convenience is lost; the grant's activation, and its other members', go on.
        environment = f"not written: {exc.strerror}"
    devices = gpu_devices(config)
    command = device_cgroup_command(entry.pw_uid, [devices[u] for u in data["gpus"] if u in devices], config)
    if command and systemd_with_cgroup2():
        run(command)
        return {"cuda_visible_devices": visible, "device_cgroup": "set", "environment": environment}
    return {"cuda_visible_devices": visible, "device_cgroup": "unavailable", "environment": environment}


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
