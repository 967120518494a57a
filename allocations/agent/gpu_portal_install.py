"""gpu-portal node installer: run once per node (and again for upgrades) as root, with the
operator's credential, never through the provisioning account's sudo rule.

The portal sends this program over SSH to `python3 -I -S -` (as root, or through the operator's
own `sudo -n`), with its input appended as one `main(...)` call. Nothing is uploaded to a place
a node user could write to: the agent's bytes travel inside this program, their SHA-256 is
checked before anything is written, and every file is written by root into root-owned
directories and renamed into place. Answers one JSON object on stdout like the agent.

What it sets up:
- the agent (root:root 0755) and its configuration, including the portal's uid range
  (id_min, id_max): the agent creates no account outside it;
- the managed group whose members' keys sshd reads from a root-owned directory, through an
  sshd drop-in that `sshd -t` checks before sshd reloads;
- the provisioning account with the portal's key, allowed through sudo exactly the agent's
  verbs, each pinned to the agent's digest (during an upgrade, the old and the new digest);
- a root-only record of the accounts and groups it created: an existing account or group it did
  not create is never taken over;
- when the portal sends a push URL and the node's samples token: a root-only push file and,
  where systemd runs, a service and a timer that run `AGENT push` as root every minute.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import sys  # noqa: F401 - the portal appends `sys.exit(main(...))`
import time

NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
PATH_RE = re.compile(r"/[A-Za-z0-9/._-]{1,250}")
VERB_RE = re.compile(r"[a-z][a-z-]{1,30}")
# The agent's PATH_SETTINGS (gpu_portal_agent/common.py; this program runs alone on the node):
# settings it refuses unless they are absolute paths (nvml_replay may be empty).
AGENT_PATH_SETTINGS = ("jupyter_bin", "jupyter_run_dir", "state_dir", "nvml_replay", "shell", "keys_dir",
                       "gpu_device_pattern", "push_config")  # fmt: skip
KEY_RE = re.compile(
    r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) "
    r"[A-Za-z0-9+/]+={0,3}( [A-Za-z0-9@._+-]{1,100})?"
)


class InstallError(Exception):
    pass


def run(args: list) -> str:
    result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise InstallError(f"{args[0]} exited {result.returncode}: {(result.stdout + result.stderr).strip()[:500]}")
    return result.stdout


def safe_root_dir(path: str, mode: int) -> None:
    """Create `path` (and parents) as root; refuse a directory anyone but root can write to,
    or a link, since root is about to put files there that decide who gets in."""
    parts = path.strip("/").split("/")
    current = ""
    for i, part in enumerate(parts):
        current += "/" + part
        try:
            os.mkdir(current, mode if i == len(parts) - 1 else 0o755)
        except FileExistsError:
            pass
        st = os.lstat(current)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise InstallError(f"{current} must be a root-owned directory that nobody else can write to")
    os.chmod(path, mode)


def write_root_file(path: str, content: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    safe_root_dir(directory, stat.S_IMODE(os.lstat(directory).st_mode) if os.path.isdir(directory) else 0o755)
    tmp = f"{path}.gpu-portal-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, content)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)


def install_agent(source: bytes, expected: str, path: str) -> str:
    digest = hashlib.sha256(source).hexdigest()
    if digest != expected:
        raise InstallError(f"the agent arrived with sha256 {digest}, expected {expected}")
    write_root_file(path, source, 0o755)
    with open(path, "rb") as f:  # what sudo will pin is what is on disk now
        written = hashlib.sha256(f.read()).hexdigest()
    if written != expected:
        raise InstallError(f"{path} changed while it was installed")
    return digest


def installer_record_path(state_dir: str) -> str:
    return os.path.join(state_dir, "installer.json")


def read_installer_record(state_dir: str) -> dict:
    """What earlier runs of the installer created (root-only, in the agent's state dir)."""
    try:
        with open(installer_record_path(state_dir)) as f:
            record = json.load(f)
    except (FileNotFoundError, ValueError):
        return {"users": [], "groups": []}
    return {"users": list(record.get("users", [])), "groups": list(record.get("groups", []))}


def write_installer_record(state_dir: str, record: dict) -> None:
    write_root_file(installer_record_path(state_dir), json.dumps(record, sort_keys=True).encode(), 0o600)


def _exists(kind: str, name: str) -> bool:
    return subprocess.run(["getent", kind, name], capture_output=True, timeout=30).returncode == 0


def check_not_taken(user: str, managed_group: str, record: dict) -> None:
    """Refuse to take over an account or group the installer did not create: naming an
    operator's existing account as the provisioning user must not wipe its password and keys.
    What an earlier run recorded is accepted, and so is an account that already has this
    installer's sudo rule (a node installed before the record existed)."""
    legacy = os.path.exists(f"/etc/sudoers.d/gpu-portal-{user}")
    for kind, name, recorded in (
        ("passwd", user, record["users"]),
        ("group", user, record["groups"]),
        ("group", managed_group, record["groups"]),
    ):
        if _exists(kind, name) and name not in recorded and not legacy:
            what = "account" if kind == "passwd" else "group"
            raise InstallError(f"a {what} named {name} already exists and was not created by this installer")


def record_what_will_be_created(state_dir: str, user: str, managed_group: str, record: dict) -> None:
    """Written BEFORE groupadd/useradd, so a run that dies half way still owns what it made."""
    if not _exists("group", managed_group) and managed_group not in record["groups"]:
        record["groups"].append(managed_group)
    if not _exists("passwd", user):
        for kind in ("users", "groups"):
            if user not in record[kind]:
                record[kind].append(user)
    if os.path.exists(f"/etc/sudoers.d/gpu-portal-{user}"):  # installed before the record existed
        for kind, names in (("users", [user]), ("groups", [user, managed_group])):
            record[kind] += [n for n in names if n not in record[kind]]
    write_installer_record(state_dir, record)


def ensure_group(name: str) -> None:
    if not _exists("group", name):
        run(["groupadd", "-r", "--", name])


def ensure_provisioning_account(user: str, public_key: str, managed_group: str) -> None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        run(["useradd", "-m", "-U", "-s", "/bin/sh", "-K", "HOME_MODE=0700", "--", user])
        entry = pwd.getpwnam(user)
    if entry.pw_uid == 0:
        raise InstallError("the provisioning account must not be root")
    run(["usermod", "-p", "*", "--", user])
    if user in run(["getent", "group", managed_group]).strip().split(":")[-1].split(","):
        raise InstallError(f"{user} must not be in {managed_group}")
    home = os.open(entry.pw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            os.mkdir(".ssh", 0o700, dir_fd=home)
        except FileExistsError:
            pass
        ssh_dir = os.open(".ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home)
    finally:
        os.close(home)
    try:
        os.fchown(ssh_dir, entry.pw_uid, entry.pw_gid)
        os.fchmod(ssh_dir, 0o700)
        tmp = f".authorized_keys.gpu-portal-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=ssh_dir)
        try:
            os.write(fd, (public_key + "\n").encode())
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        finally:
            os.close(fd)
        os.rename(tmp, "authorized_keys", src_dir_fd=ssh_dir, dst_dir_fd=ssh_dir)
    finally:
        os.close(ssh_dir)


def sudoers_rule(user: str, agent_path: str, digests: list, verbs: list) -> str:
    """One command per verb and allowed digest, each pinned: `bootstrap` or any other argument
    is refused by sudo itself, and so is an agent file of any other digest. Two digests only
    while an upgrade replaces the file (the old one and the new one)."""
    commands = ", ".join(f"sha256:{digest} {agent_path} {verb}" for digest in digests for verb in verbs)
    return f"{user} ALL=(root) NOPASSWD: {commands}\n"


def installed_digest(path: str):
    """The sha256 of the agent file installed now (a regular file), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        while chunk := os.read(fd, 1 << 16):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


def install_sudoers(user: str, rule: str) -> str:
    path = f"/etc/sudoers.d/gpu-portal-{user}"
    tmp = f"/etc/sudoers.d/.gpu-portal-{user}.new"  # a name with a dot: sudo ignores it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o440)
    try:
        os.write(fd, rule.encode())
    finally:
        os.close(fd)
    try:
        run(["visudo", "-cf", tmp])
    except InstallError:
        os.unlink(tmp)
        raise
    os.rename(tmp, path)
    return path


def sshd_dropin(managed_group: str, keys_dir: str) -> str:
    return (
        "# Written by the gpu-portal installer. Accounts the portal manages log in only with the\n"
        "# keys in a root-owned file: nothing in their home directory grants access.\n"
        f"Match Group {managed_group}\n"
        f"    AuthorizedKeysFile {keys_dir}/%u\n"
        "    AuthorizedKeysCommand none\n"
        "    AuthorizedPrincipalsFile none\n"
        "    PasswordAuthentication no\n"
        "    KbdInteractiveAuthentication no\n"
        "    AllowTcpForwarding local\n"
        "    AllowStreamLocalForwarding local\n"
        "    GatewayPorts no\n"
        "    PermitTunnel no\n"
        "    X11Forwarding no\n"
    )


def install_sshd_dropin(sshd: dict, content: str) -> None:
    """Write the drop-in, let `sshd -t` check the whole configuration (a bad one would stop sshd
    on reload), then reload sshd."""
    path = sshd["dropin"]
    previous = None
    if os.path.exists(path):
        with open(path, "rb") as f:
            previous = f.read()
    write_root_file(path, content.encode(), 0o644)
    check = subprocess.run(["/usr/sbin/sshd", "-t", "-f", sshd["config"]], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        if previous is None:
            os.unlink(path)
        else:
            write_root_file(path, previous, 0o644)
        raise InstallError(f"sshd -t refused the configuration: {check.stderr.strip()[:500]}")
    listen = [
        line.split()[1] for line in run(["/usr/sbin/sshd", "-T", "-f", sshd["config"]]).splitlines()
        if line.startswith("listenaddress ")
    ]  # fmt: skip
    try:
        with open(sshd["pid_file"]) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise InstallError(f"could not reload sshd through {sshd['pid_file']}: {exc}") from exc
    wait_for_sshd(listen)


def wait_for_sshd(listen: list) -> None:
    """sshd re-executes itself on SIGHUP and listens again a moment later: answer only once it
    does, so the portal's next connection is not refused."""
    time.sleep(0.3)
    deadline = time.monotonic() + 15
    for address in listen:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 - a probe, not a bind
        while True:
            try:
                with socket.create_connection((host, int(port)), timeout=2) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise InstallError(f"sshd does not answer on {address} after reloading")
            time.sleep(0.1)


SYSTEMD_DIR = "/etc/systemd/system"
UNIT = "gpu-portal-push"


def push_units(agent_path: str) -> dict:
    """A oneshot service running the agent's push as root and a timer firing it every minute
    (with jitter, so a thousand nodes do not post in the same second)."""
    service = (
        "[Unit]\n"
        "Description=gpu-portal: send GPU samples to the portal\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={agent_path} push\n"
        "StandardInput=null\n"
        "TimeoutStartSec=100\n"
        "Nice=10\n"
    )
    timer = (
        "[Unit]\n"
        "Description=gpu-portal: send GPU samples every minute\n\n"
        "[Timer]\n"
        "OnBootSec=30s\n"
        "OnUnitActiveSec=60s\n"
        "AccuracySec=1s\n"
        "RandomizedDelaySec=10s\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def install_push(data: dict) -> str:
    """The push file (URL and token, root-only), then the timer where systemd runs. Returns a
    note for the operator."""
    push = data.get("push")
    if not push:
        return "no push configured: the node does not send samples"
    write_root_file(
        data["config"]["push_config"], json.dumps({"url": push["url"], "token": push["token"]}).encode(), 0o600
    )
    if not os.path.isdir("/run/systemd/system"):
        return (
            f"systemd is not running here: no push timer installed; run `{data['agent_path']} push` as root "
            "every minute by other means (cron)"
        )
    for name, content in push_units(data["agent_path"]).items():
        write_root_file(os.path.join(SYSTEMD_DIR, name), content.encode(), 0o644)
    run(["systemctl", "daemon-reload"])
    run(["systemctl", "enable", "--now", f"{UNIT}.timer"])
    return f"{UNIT}.timer installed: samples are pushed every minute"


def check_input(data: dict) -> None:
    for key in ("provisioning_user",):
        if not NAME_RE.fullmatch(data.get(key) or ""):
            raise InstallError(f"{key} is not a valid user name")
    config = data.get("config") or {}
    if not NAME_RE.fullmatch(config.get("managed_group") or ""):
        raise InstallError("managed_group is not a valid group name")
    for path in (data["agent_path"], data["config_path"], config["keys_dir"], config["state_dir"],
                 config["push_config"], data["sshd"]["config"], data["sshd"]["dropin"],
                 data["sshd"]["pid_file"]):  # fmt: skip
        if not PATH_RE.fullmatch(path or "") or "/../" in path or path.endswith("/.."):
            raise InstallError(f"not a plain absolute path: {path!r}")
    for name in AGENT_PATH_SETTINGS:  # the agent would refuse every verb (bad_config)
        value = config.get(name)
        if name in config and not (name == "nvml_replay" and value == ""):
            if not isinstance(value, str) or not value.startswith("/") or "\0" in value or "\n" in value:
                raise InstallError(f"{name} must be an absolute path, not {value!r}"[:300])
    low, high = config.get("id_min"), config.get("id_max")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) or not 1000 <= low <= high:
        raise InstallError("id_min and id_max (the portal's uid range, from 1000) are required")
    if not KEY_RE.fullmatch(data.get("public_key") or ""):
        raise InstallError("public_key must be one bare public key")
    push = data.get("push")
    if push and (
        not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]_/%-]{1,500}", push.get("url") or "")
        or not re.fullmatch(r"[A-Za-z0-9_-]{32,128}", push.get("token") or "")
    ):
        raise InstallError("push needs an http(s) URL and a token of URL-safe characters")
    if not data.get("verbs") or not all(VERB_RE.fullmatch(v) for v in data["verbs"]):
        raise InstallError("verbs must be plain verb names")


def main(encoded: str) -> int:
    try:
        if os.geteuid() != 0:
            raise InstallError("the installer must run as root")
        data = json.loads(base64.b64decode(encoded))
        check_input(data)
        config = data["config"]
        user = data["provisioning_user"]
        safe_root_dir(config["state_dir"], 0o700)
        record = read_installer_record(config["state_dir"])
        check_not_taken(user, config["managed_group"], record)
        safe_root_dir(config["keys_dir"], 0o755)
        record_what_will_be_created(config["state_dir"], user, config["managed_group"], record)
        ensure_group(config["managed_group"])
        ensure_provisioning_account(user, data["public_key"], config["managed_group"])
        # An upgrade never leaves a moment where sudo refuses the agent: first both digests
        # (the file installed now and the new one), then the file, then only the new digest.
        old = installed_digest(data["agent_path"])
        if old and old != data["agent_sha256"]:
            install_sudoers(user, sudoers_rule(user, data["agent_path"], [old, data["agent_sha256"]], data["verbs"]))
            # sudo reads its rules, then digests the file: one that read the old rule a moment
            # ago must finish that check before the file changes under it.
            time.sleep(1)
        digest = install_agent(base64.b64decode(data["agent_b64"]), data["agent_sha256"], data["agent_path"])
        write_root_file(data["config_path"], json.dumps(config, indent=2).encode(), 0o644)
        install_sudoers(user, sudoers_rule(user, data["agent_path"], [digest], data["verbs"]))
        install_sshd_dropin(data["sshd"], sshd_dropin(config["managed_group"], config["keys_dir"]))
        push_note = install_push(data)
    except (InstallError, OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
        print(json.dumps({"ok": False, "error": "install_failed", "message": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps({"ok": True, "version": data["version"], "sha256": digest,
                      "provisioning_user": data["provisioning_user"], "push": push_note}))  # fmt: skip
    return 0
