#!/usr/bin/python3
"""gpu-portal node agent: the only program the portal runs on a GPU node.

Run by the provisioning account as `sudo -n <agent> VERB`, with a JSON object on stdin; it
answers one JSON object on stdout: {"ok": true, ...} with exit 0, or {"ok": false, "error":
CODE, "message": TEXT} with exit 2 (refused or failed) or 3 (a bug). Every verb is idempotent:
running it twice leaves the node as running it once does.

Stdlib only (Python >= 3.9); `pynvml` (nvidia-ml-py) is used when present. No argument is
ever passed through a shell. The agent only touches unix accounts whose names start with the
configured prefix and whose uid is >= 1000, so the portal cannot reach system accounts.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import sys
import time

VERSION = "1.0"
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
}
USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) "
    r"[A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]{1,100})?$"
)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GPU_ID_RE = re.compile(r"^(GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9a-fA-F-]{8,64}|\d{1,2})$")
SESSION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # a Jupyter session's name: no dot, no slash
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
MIN_UID = 1000


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


def managed_user(config: dict, username: str, must_exist: bool = True):
    """The passwd entry of an account the agent may manage, or None when it does not exist."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise AgentError("bad_username", "not a valid unix user name")
    if not username.startswith(config["account_prefix"]):
        raise AgentError("bad_username", f"only accounts starting with {config['account_prefix']!r} are managed")
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        if must_exist:
            raise AgentError("no_such_user", f"{username} does not exist") from None
        return None
    if entry.pw_uid < MIN_UID:
        raise AgentError("bad_username", "system accounts are not managed")
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
    try:
        dfd = open_dir_nofollow(os.path.join(entry.pw_dir, ".ssh"))
    except OSError:
        return False
    try:
        os.unlink(name, dir_fd=dfd)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(dfd)


def read_user_file(entry, name: str):
    try:
        dfd = open_dir_nofollow(os.path.join(entry.pw_dir, ".ssh"))
    except OSError:
        return None
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    with os.fdopen(fd) as f:
        return f.read()


def shadow_entry(username: str) -> list:
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == username:
                return fields
    return []


def user_pids(uid: int) -> list:
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                status = f.read()
        except OSError:
            continue
        uid_line = re.search(r"^Uid:\s+(\d+)", status, re.M)
        state = re.search(r"^State:\s+(\w)", status, re.M)
        if uid_line and int(uid_line.group(1)) == uid and not (state and state.group(1) == "Z"):
            pids.append(int(name))
    return pids


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
    if not isinstance(value, str) or not SESSION_RE.match(value):
        raise AgentError("bad_session", "session must be 1-32 lower-case letters, digits or dashes")
    return value


def valid_gpus(value) -> str:
    if not isinstance(value, list) or not all(isinstance(g, str) and GPU_ID_RE.match(g) for g in value):
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
        }
        for d in devices
    ]
    return {"driver_version": driver, "gpus": gpus}


def verb_ensure_account(data: dict, config: dict) -> dict:
    username = data.get("username")
    expires = data.get("expires_on", "")
    if not isinstance(expires, str) or not DATE_RE.match(expires):
        raise AgentError("bad_date", "expires_on must be YYYY-MM-DD")
    entry = managed_user(config, username, must_exist=False)
    created = entry is None
    if created:
        run(
            ["useradd", "-m", "-U", "-s", config["shell"], "-K", "HOME_MODE=0700", "-K", "SUB_UID_COUNT=0",
             "-K", "SUB_GID_COUNT=0", "-e", expires, "--", username]
        )  # fmt: skip
        entry = managed_user(config, username)
    # '*' = no password but not locked: key logins work (a '!' account is refused without PAM).
    run(["usermod", "-p", "*", "-e", expires, "--", username])
    return {"created": created, "uid": entry.pw_uid, "home": entry.pw_dir}


def verb_set_keys(data: dict, config: dict) -> dict:
    entry = managed_user(config, data.get("username"))
    keys = data.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) and KEY_RE.match(k) for k in keys):
        raise AgentError("bad_keys", "keys must be a list of bare public keys, one per entry")
    content = "".join(k + "\n" for k in keys)
    write_user_file(entry, "authorized_keys", content)
    return {"count": len(keys), "sha256": hashlib.sha256(content.encode()).hexdigest()}


def verb_set_gpus(data: dict, config: dict) -> dict:
    """CUDA_VISIBLE_DEVICES for SSH sessions (sshd PermitUserEnvironment) and Jupyter. A
    convenience, not isolation: see docs/nodes.md."""
    entry = managed_user(config, data.get("username"))
    visible = valid_gpus(data.get("gpus"))
    write_user_file(entry, "environment", f"CUDA_VISIBLE_DEVICES={visible}\n")
    return {"cuda_visible_devices": visible}


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
            except FileNotFoundError:
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
    if not isinstance(token, str) or not TOKEN_RE.match(token):
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
    log_path = os.path.join(state_dir(config), f"jupyter-{entry.pw_name}.{name}.log")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
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
            user=entry.pw_uid, group=entry.pw_gid, extra_groups=os.getgrouplist(entry.pw_name, entry.pw_gid),
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            close_fds=True, cwd=entry.pw_dir, env=env,
        )  # fmt: skip
    finally:
        os.close(log)
    with open(state_path, "w") as f:
        json.dump({"pid": proc.pid, "socket": sock, "token_sha256": token_hash}, f)
    deadline = time.monotonic() + float(data.get("wait_seconds", 60))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AgentError("jupyter_exited", f"jupyter exited with {proc.returncode}; see {log_path}")
        if socket_answers(sock, entry.pw_uid):
            return {"pid": proc.pid, "socket": sock, "already_running": False}
        time.sleep(0.2)
    raise AgentError("jupyter_timeout", f"jupyter did not answer on {sock} in time")


def verb_stop_jupyter(data: dict, config: dict) -> dict:
    entry = managed_user(config, data.get("username"), must_exist=False)
    name = valid_session_name(data.get("session"))
    if entry is None:
        return {"stopped": False}
    return {"stopped": stop_jupyter_state(entry, jupyter_state_path(config, entry.pw_name, name))}


def verb_revoke(data: dict, config: dict) -> dict:
    """Remove keys, stop Jupyter and every process, lock the account; keep the home."""
    entry = managed_user(config, data.get("username"), must_exist=False)
    if entry is None:
        return {"existed": False, "killed": 0}
    remove_user_file(entry, "authorized_keys")
    remove_user_file(entry, "environment")
    stop_jupyter(config, entry)
    run(["usermod", "-L", "-e", "1", "--", entry.pw_name])
    killed = 0
    for _ in range(50):
        pids = user_pids(entry.pw_uid)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    else:
        raise AgentError("processes_remain", f"processes of {entry.pw_name} survive SIGKILL")
    return {"existed": True, "killed": killed}


def verb_status(data: dict, config: dict) -> dict:
    """What the node has for each account the portal asks about."""
    accounts = {}
    for username in data.get("usernames", []):
        entry = managed_user(config, username, must_exist=False)
        if entry is None:
            accounts[username] = {"exists": False}
            continue
        shadow = shadow_entry(username)
        keys = read_user_file(entry, "authorized_keys")
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
    return {"accounts": accounts, "version": VERSION}


def verb_bootstrap(data: dict, config: dict) -> dict:
    """Run once per node by an operator (root): write the configuration, create the restricted
    provisioning account with the portal's key, and allow it exactly this program (pinned by
    its SHA-256) through sudo."""
    if os.geteuid() != 0:
        raise AgentError("not_root", "bootstrap must run as root")
    user = data.get("provisioning_user", "")
    if not USERNAME_RE.match(user or ""):
        raise AgentError("bad_username", "not a valid provisioning user name")
    key = data.get("public_key", "")
    if not KEY_RE.match(key or ""):
        raise AgentError("bad_keys", "public_key must be one bare public key")
    agent_path = data.get("agent_path", "")
    if not re.match(r"^/[A-Za-z0-9/._-]+$", agent_path) or not os.path.isfile(agent_path):
        raise AgentError("bad_path", "agent_path must name the installed agent")
    new_config = {k: v for k, v in (data.get("config") or {}).items() if k in DEFAULT_CONFIG}
    os.makedirs(os.path.dirname(CONFIG_PATH), mode=0o755, exist_ok=True)
    with open(CONFIG_PATH + ".tmp", "w") as f:
        json.dump({**DEFAULT_CONFIG, **new_config}, f, indent=2)
    os.chmod(CONFIG_PATH + ".tmp", 0o644)
    os.rename(CONFIG_PATH + ".tmp", CONFIG_PATH)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        run(["useradd", "-m", "-U", "-s", "/bin/sh", "-K", "HOME_MODE=0700", "--", user])
        entry = pwd.getpwnam(user)
    run(["usermod", "-p", "*", "--", user])
    write_user_file(entry, "authorized_keys", key + "\n")
    with open(agent_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    rule = f"{user} ALL=(root) NOPASSWD: sha256:{digest} {agent_path}\n"
    sudoers = f"/etc/sudoers.d/gpu-portal-{user}"
    with open(sudoers + ".tmp", "w") as f:
        f.write(rule)
    os.chmod(sudoers + ".tmp", 0o440)
    check = run(["visudo", "-cf", sudoers + ".tmp"], check=False)
    if check.returncode != 0:
        os.unlink(sudoers + ".tmp")
        raise AgentError("sudoers_invalid", check.stdout + check.stderr)
    os.rename(sudoers + ".tmp", sudoers)
    return {"version": VERSION, "sha256": digest, "provisioning_user": user}


VERBS = {
    "version": verb_version,
    "inventory": verb_inventory,
    "status": verb_status,
    "ensure-account": verb_ensure_account,
    "set-keys": verb_set_keys,
    "set-gpus": verb_set_gpus,
    "start-jupyter": verb_start_jupyter,
    "stop-jupyter": verb_stop_jupyter,
    "revoke": verb_revoke,
    "bootstrap": verb_bootstrap,
}


def main(argv: list) -> int:
    def answer(obj: dict, code: int) -> int:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()
        return code

    if len(argv) != 2 or argv[1] not in VERBS:
        return answer({"ok": False, "error": "bad_verb", "message": f"verbs: {', '.join(sorted(VERBS))}"}, 2)
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
