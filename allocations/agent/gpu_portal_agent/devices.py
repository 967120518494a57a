"""The node's GPUs (NVML or its recorded answer) and GPU isolation: each GPU's device file lets
exactly its grant's current members' uids in."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import struct

from .common import (
    GPU_ID_RE,
    MIN_UID,
    AgentError,
    _managed_name,
    _read_record,
    managed_user,
    nvml_started,
    replace_json,
    state_dir,
)
from .userland import real_uid


def verb_inventory(data: dict, config: dict) -> dict:
    """The node's GPUs as NVML reports them (or a recorded NVML answer, for nodes without GPUs
    in tests: config nvml_replay)."""
    if config.get("nvml_replay"):
        with open(config["nvml_replay"]) as f:
            recorded = json.load(f)
        devices, driver = recorded["devices"], recorded.get("driver_version", "")
    else:
        pynvml = nvml_started()
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
    replace_json(_holdings_path(config), holdings, sort_keys=True)


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
        uid = real_uid(name)
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
