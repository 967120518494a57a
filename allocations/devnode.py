"""A GPU node stand-in on this machine, for the test suite and for `make run`'s demo node.

OpenSSH's sshd on 127.0.0.1 with its own host key and a configuration that includes a drop-in
folder (where the installer writes the managed accounts' rules), real sudo, useradd and a real
jupyter server; only NVML is replayed from a recorded fixture and the GPU device files are
character-device stand-ins. Everything such a node puts on the machine carries the node's
prefix (accounts, groups, the agent, its configuration, the sudo rule), so `node_remove` takes
away exactly what it created and nothing else. Needs root. Development and tests only.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from allocations.node_install import SshdSettings

ROOT = Path(__file__).resolve().parent.parent
NVML_REPLAY = ROOT / "tests/fixtures/nvml/h100-sxm-8.json"
JUPYTER_REQUIREMENTS = ROOT / "allocations/agent/node-jupyter-requirements.txt"
REQUIRED_BINARIES = ("/usr/sbin/sshd", "/usr/bin/sudo", "/usr/sbin/useradd", "/usr/sbin/visudo")
# How many uids one stand-in node may hand out: unix_id_base + 1 ... unix_id_base + ID_SPAN.
ID_SPAN = 9_999


@dataclass(frozen=True)
class NodeHost:
    """Where one stand-in node keeps everything; all names derive from `prefix`."""

    address: str
    port: int
    host_key: str
    operator_key: str
    portal_key: str
    prefix: str
    provisioning_user: str
    agent_path: str
    config_path: str
    state_dir: str
    jupyter_run_dir: str
    jupyter_bin: str
    nvml_replay: str
    base: Path
    keys_dir: str
    managed_group: str
    device_dir: str
    sshd: SshdSettings = field(default_factory=SshdSettings)
    unix_id_base: int = 0

    @property
    def id_max(self) -> int:
        """The last uid of the node's range (the portal's NODE_UNIX_ID_MAX for this node)."""
        return self.unix_id_base + ID_SPAN

    @property
    def push_config(self) -> str:
        """The root-only push file (URL and samples token), in the node's own config folder."""
        return str(Path(self.config_path).with_name("push.json"))

    def agent_config(self) -> dict:
        return {
            "account_prefix": self.prefix,
            "jupyter_bin": self.jupyter_bin,
            "state_dir": self.state_dir,
            "jupyter_run_dir": self.jupyter_run_dir,
            "nvml_replay": self.nvml_replay,
            "keys_dir": self.keys_dir,
            "managed_group": self.managed_group,
            "gpu_device_pattern": self.device_dir + "/nvidia{minor}",
            "push_config": self.push_config,
            # The portal's uid range (NODE_UNIX_ID_BASE + 1 ...): a run's own slice of it.
            "id_min": self.unix_id_base + 1,
            "id_max": self.id_max,
        }

    def device(self, minor: int) -> str:
        return f"{self.device_dir}/nvidia{minor}"

    def to_json(self) -> str:
        data = asdict(self)
        data["base"] = str(self.base)
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> NodeHost:
        data = json.loads(text)
        data["base"] = Path(data["base"])
        data["sshd"] = SshdSettings(**data["sshd"])
        return cls(**data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def keygen(path: Path, comment: str = "test") -> str:
    """A new ed25519 key pair at `path` (kept if it exists); returns the public line."""
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


# Root's own folder for the stand-in node's JupyterLab (root-owned, 0755 down to the venv):
# the agent refuses a Jupyter that anyone but root could change, and no one else can make a
# folder here for the next run to trust.
NODE_JUPYTER_BASE = Path("/var/lib/gpu-portal-devnode")


def node_jupyter_bin() -> str:
    """A JupyterLab venv made from the system's /usr/bin/python3, in a world-readable place
    (accounts cannot reach anything under /root) that root alone can write, cached by its
    pinned requirements. A venv found there that someone other than root could change is
    built again."""
    digest = hashlib.sha256(JUPYTER_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = NODE_JUPYTER_BASE / f"jupyter-{digest}"
    jupyter = venv / "bin/jupyter"
    if not (venv / ".complete").exists() or writable_by_others(jupyter):  # venvs hard-code their path
        NODE_JUPYTER_BASE.mkdir(mode=0o755, exist_ok=True)
        os.chown(NODE_JUPYTER_BASE, 0, 0)
        os.chmod(NODE_JUPYTER_BASE, 0o755)  # noqa: S103 - node accounts must run this jupyter
        shutil.rmtree(venv, ignore_errors=True)
        old_umask = os.umask(0o022)
        try:
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "-r",
                 str(JUPYTER_REQUIREMENTS)],
                check=True,
            )  # fmt: skip
        finally:
            os.umask(old_umask)
        os.chmod(venv, 0o755)  # noqa: S103 - node accounts must run this jupyter
        (venv / ".complete").touch()
    return str(jupyter)


def remove_accounts(prefixes: list[str]) -> list[str]:
    """Remove every account and group whose name starts with one of `prefixes` (their
    processes first: userdel refuses while any remain). Returns what was removed."""
    removed = []
    for entry in pwd.getpwall():
        if any(entry.pw_name.startswith(p) for p in prefixes):
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], check=False)
            for _ in range(30):
                if subprocess.run(["pgrep", "-u", entry.pw_name], capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
            subprocess.run(["userdel", "-r", "-f", entry.pw_name], capture_output=True, check=False)
            removed.append(entry.pw_name)
    for group in grp.getgrall():
        if any(group.gr_name.startswith(p) for p in prefixes):
            subprocess.run(["groupdel", "-f", group.gr_name], capture_output=True, check=False)
            removed.append(f"group {group.gr_name}")
    return removed


def node_accounts(host: NodeHost) -> list[pwd.struct_passwd]:
    """The accounts the node's agent created for users: the node's prefix and a uid in its
    range (the provisioning account and every other account of the machine are not)."""
    return [
        entry
        for entry in pwd.getpwall()
        if entry.pw_name.startswith(host.prefix) and host.unix_id_base < entry.pw_uid <= host.id_max
    ]


def live_processes(uid: int) -> list[int]:
    """The processes of `uid` that still run (zombies, which linger until reaped, excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            found.append(int(entry))
    return found


def stop_account_processes(host: NodeHost, grace: float = 1.5) -> list[str]:
    """Stop every process of the node's user accounts (their JupyterLabs, shells, anything they
    left running): SIGTERM, then SIGKILL after `grace` seconds. Returns the accounts that had any."""
    running = {e.pw_name: e.pw_uid for e in node_accounts(host) if live_processes(e.pw_uid)}
    for uid in running.values():
        subprocess.run(["pkill", "-TERM", "-U", str(uid)], check=False)
    deadline = time.monotonic() + grace
    for uid in running.values():
        killed = False
        while live_processes(uid) and time.monotonic() < deadline + 0.5:
            if time.monotonic() > deadline and not killed:
                subprocess.run(["pkill", "-KILL", "-U", str(uid)], check=False)
                killed = True
            time.sleep(0.05)
    return sorted(running)


# Device numbers of harmless devices anyone may open (zero, full, random, fuse, tun, hwrng,
# autofs, urandom), one per stand-in GPU: the agent finds a GPU's holders by device number, so
# two GPUs (or a GPU and /dev/null, which every daemon holds) must not share one.
STAND_IN_DEVICES = [(1, 5), (1, 7), (1, 8), (10, 229), (10, 200), (10, 183), (10, 235), (1, 9)]


def make_devices(directory: Path) -> None:
    """Stand-ins for /dev/nvidiaN: character devices of distinct numbers (opening one works)
    that start closed, as a node's driver leaves them with NVreg_DeviceFileMode=0600. Existing
    ones are kept: the agent has given them to grants."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    for minor, (major, number) in enumerate(STAND_IN_DEVICES):
        path = directory / f"nvidia{minor}"
        if not path.exists():
            subprocess.run(["mknod", "-m", "0600", str(path), "c", str(major), str(number)], check=True)


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if not os.path.exists(b)]


def writable_by_others(path: Path) -> Path | None:
    """The first existing folder above `path` that a non-root user could write to: sshd's
    StrictModes then refuses every key file below it."""
    for folder in [path, *path.parents]:
        if folder.exists():
            st = folder.stat()
            if st.st_uid != 0 or st.st_mode & 0o022:
                return folder
    return None


def node_layout(*, prefix: str, base: Path, run_dir: Path, port: int, portal_key: str, unix_id_base: int) -> NodeHost:
    """Where everything of the node named by `prefix` lives. `base` holds the sshd's files and
    keys (kept between runs), `run_dir` the device stand-ins and Jupyter sockets."""
    etc = f"/etc/gpu-portal-{prefix}"
    return NodeHost(
        address="127.0.0.1",
        port=port,
        host_key="",
        operator_key=str(base / "operator_ed25519"),
        portal_key=portal_key,
        prefix=prefix,
        provisioning_user=f"{prefix}prov",
        agent_path=f"/usr/local/sbin/gpu-portal-agent-{prefix}",
        config_path=f"{etc}/agent.json",
        state_dir=f"/var/lib/gpu-portal-{prefix}",
        jupyter_run_dir=str(run_dir / "jupyter"),
        jupyter_bin="",
        nvml_replay=str(NVML_REPLAY),
        base=base,
        keys_dir=f"{etc}/authorized_keys",
        managed_group=f"{prefix}users",
        device_dir=str(run_dir / "dev"),
        sshd=SshdSettings(
            config=str(base / "sshd_config"),
            dropin=str(base / "sshd_config.d/gpu-portal.conf"),
            pid_file=str(base / "sshd.pid"),
        ),
        unix_id_base=unix_id_base,
    )


def node_prepare(layout: NodeHost) -> NodeHost:
    """Write the node's keys, sshd configuration and device stand-ins (existing keys and
    drop-ins are kept) and build the Jupyter venv. Returns the layout with the host key."""
    base = layout.base
    for folder in (base, base / "authorized", base / "sshd_config.d"):
        folder.mkdir(mode=0o755, parents=True, exist_ok=True)
        folder.chmod(0o755)
    host_key = keygen(base / "host_ed25519", comment=layout.prefix)
    operator_pub = keygen(Path(layout.operator_key), comment=f"{layout.prefix}-operator")
    (base / "authorized/root").write_text(operator_pub + "\n")
    os.chmod(base / "authorized/root", 0o644)
    make_devices(Path(layout.device_dir))
    Path(layout.sshd.config).write_text(
        f"""Include {base}/sshd_config.d/*.conf
Port {layout.port}
ListenAddress 127.0.0.1
HostKey {base}/host_ed25519
PidFile {layout.sshd.pid_file}
AuthorizedKeysFile .ssh/authorized_keys {base}/authorized/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
PermitUserEnvironment CUDA_VISIBLE_DEVICES
MaxStartups 200:30:400
StrictModes yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""
    )
    values = {**asdict(layout), "base": base, "sshd": layout.sshd}
    values.update(host_key=" ".join(host_key.split()[:2]), jupyter_bin=node_jupyter_bin())
    return NodeHost(**values)


def sshd_start(host: NodeHost) -> subprocess.Popen:
    """Start the node's sshd in its own session (a Ctrl-C meant for its parent never reaches
    it; `sshd_stop` ends it), logging to `<base>/sshd.log`."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", host.sshd.config], check=True)
    with open(host.base / "sshd.log", "ab") as log:
        proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", host.sshd.config], stderr=log, start_new_session=True
        )
    wait_for_port(host.port)
    return proc


def sshd_stop(proc: subprocess.Popen) -> None:
    """Stop sshd and every session it started (they share its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def node_remove(host: NodeHost, *, keep_base: bool = False) -> list[str]:
    """Take away what the node put on this machine: accounts and groups of its prefix (and
    their processes), the agent, its configuration and state, the sudo rule, the device
    stand-ins and Jupyter sockets, and unless `keep_base` the sshd's files and keys."""
    removed = remove_accounts([host.prefix])
    for path in (host.agent_path, f"/etc/sudoers.d/gpu-portal-{host.provisioning_user}"):
        if os.path.lexists(path):
            Path(path).unlink()
            removed.append(path)
    folders = [Path(host.config_path).parent, Path(host.state_dir), Path(host.device_dir).parent]
    if not keep_base:
        folders.append(host.base)
    elif os.path.lexists(host.sshd.dropin):
        Path(host.sshd.dropin).unlink()
        removed.append(host.sshd.dropin)
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def node_bootstrap(host: NodeHost, *, hostname: str, gpu_model: str = "H100-80GB", portal_url: str = ""):
    """What an operator does for a new node, done for the stand-in: register it (or update the
    address and port of a node of that name), pin the host key read from the node's own key
    file (the out-of-band check), install the agent through the real installer and read the
    GPU inventory. Running it again repairs whatever was removed since. With `portal_url` the
    node gets a samples token and the push file `host.push_config` (nothing outside the node's
    own folders); `install_agent_args` with the same `portal_url` does exactly the same."""
    from django.conf import settings

    from allocations import ssh
    from allocations.models import Node
    from allocations.services import nodes as node_services

    node = Node.objects.filter(hostname=hostname).first()
    if node is None:
        node = node_services.node_register(
            hostname=hostname,
            address=host.address,
            ssh_port=host.port,
            ssh_username=host.provisioning_user,
            gpu_model=gpu_model,
            agent_path=host.agent_path,
        )
    elif (node.address, node.ssh_port, node.ssh_username) != (host.address, host.port, host.provisioning_user):
        Node.objects.filter(pk=node.pk).update(
            address=host.address, ssh_port=host.port, ssh_username=host.provisioning_user, agent_path=host.agent_path
        )
        node.refresh_from_db()
    confirmed = ssh.fingerprint(host.host_key)
    if node.host_key_fingerprint != confirmed:
        presented = node_services.node_fetch_host_key(node=node)
        node = node_services.node_pin_host_key(node=node, key_line=presented, confirmed_fingerprint=confirmed)
    node_services.node_install_agent(
        node=node,
        operator_user="root",
        operator_key=host.operator_key,
        provisioning_public_key=ssh.ensure_key_pair(host.portal_key or settings.PROVISIONING_SSH_KEY),
        config_path=host.config_path,
        agent_config=host.agent_config(),
        sshd=host.sshd,
        portal_url=portal_url,
    )
    node_services.node_inventory(node=node)
    node.refresh_from_db()
    return node


def install_agent_args(host: NodeHost, hostname: str, *, portal_url: str = "") -> list[str]:
    """The `manage.py install_agent` arguments that install this node's agent by hand, exactly
    as `node_bootstrap(host, hostname=hostname, portal_url=portal_url)` does: the same agent
    configuration (the uid range comes from the settings NODE_UNIX_ID_BASE and NODE_UNIX_ID_MAX,
    which must be `host.unix_id_base` and `host.id_max`), the push file in the node's own config
    folder, and a push only with `portal_url`."""
    config = host.agent_config()
    push = ["--portal-url", portal_url] if portal_url else ["--no-push"]
    return [
        "install_agent", hostname, "--operator-user", "root", "--operator-key", host.operator_key,
        "--config-path", host.config_path, "--jupyter-bin", config["jupyter_bin"],
        "--state-dir", config["state_dir"], "--jupyter-run-dir", config["jupyter_run_dir"],
        "--nvml-replay", config["nvml_replay"], "--keys-dir", config["keys_dir"],
        "--managed-group", config["managed_group"], "--gpu-device-pattern", config["gpu_device_pattern"],
        "--push-config", config["push_config"], *push,
        "--sshd-config", host.sshd.config, "--sshd-dropin", host.sshd.dropin, "--sshd-pid-file", host.sshd.pid_file,
    ]  # fmt: skip
