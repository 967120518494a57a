"""One JupyterLab per user and session (grant), on a unix socket in a 0700 folder only the user
reaches; its token never appears on a command line."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import time

from .common import (
    SESSION_RE,
    TOKEN_RE,
    AgentError,
    limited_resources,
    managed_user,
    replace_json,
    root_only,
    state_dir,
    valid_gpus,
)
from .userland import open_dir_nofollow


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
        if st.st_mode & 0o755 != 0o755:  # made under a narrower umask: every user must pass through
            os.fchmod(base_fd, 0o755)
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


def trusted_jupyter(jupyter_bin: str) -> None:
    """The Jupyter program and its environment's packages (`<venv>/bin/jupyter`,
    `<venv>/lib/python*/site-packages`) can be changed by root alone, every folder above them
    too: whoever could write there would run code as every user who starts a server."""
    venv = os.path.dirname(os.path.dirname(os.path.realpath(jupyter_bin)))
    lib = os.path.join(venv, "lib")
    packages = [os.path.join(lib, d, "site-packages") for d in sorted(os.listdir(lib))] if os.path.isdir(lib) else []
    for path in [jupyter_bin, *(p for p in packages if os.path.isdir(p))]:
        if not root_only(path):
            raise AgentError(
                "unsafe_jupyter", f"{path} (or a folder above it) can be changed by someone other than root"
            )


def verb_start_jupyter(data: dict, config: dict) -> dict:
    """Start JupyterLab for one session (a grant) as the user, on a unix socket in the user's
    0700 folder, with that grant's GPUs. A server of this session already running with this
    token is kept (a retried task); any other is stopped first, so a new token always means a
    new server and an old token never outlives its server. Other sessions are not touched.
    The server inherits the agent's limits, which sudo took from the caller: one still lower
    than the node's default (a hard limit root could not lift, lift_limits) is refused
    before anything is stopped, so the provisioning account never shapes a user's server."""
    limited = limited_resources()
    if limited:
        raise AgentError(
            "caller_limits", f"the caller's limits on {', '.join(limited)} reach the user's server and cannot be lifted"
        )
    trusted_jupyter(config["jupyter_bin"])
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
        try:
            replace_json(state_path, {"pid": proc.pid, "socket": sock, "token_sha256": token_hash})
        except BaseException:  # a server no state file records could never be stopped: none
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
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
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # disk_full (cli.main): worth another try
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
