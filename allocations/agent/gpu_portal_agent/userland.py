"""What a managed account controls: files in its ~/.ssh (never followed through a link, never
blocking on a FIFO) and its processes (ended whatever they fork meanwhile)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import stat
import time

from .common import MAX_USER_FILE, AgentError, replace_file


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
    """Write ~/.ssh/NAME atomically (temp file + rename) without following links. The temporary
    name is new each time: the user owns the folder and could block a predictable one."""
    dfd = ssh_dir_fd(entry)
    tmp = f".{name}.gpu-portal.{secrets.token_hex(8)}.tmp"
    try:
        replace_file(name, content.encode(), 0o600, (entry.pw_uid, entry.pw_gid), dfd, tmp)
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


def real_uid(pid) -> int | None:
    """The real uid a process runs as, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            found = re.search(r"^Uid:\s+(\d+)", f.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None


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
