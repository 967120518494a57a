"""A real GPU node stand-in: OpenSSH's sshd on 127.0.0.1 with throwaway host keys, real sudo,
real useradd and a real jupyter server. Only NVML is replayed (no GPU on these machines).

Everything the fixtures create on the machine carries a random id (accounts `gpt<id>…`, the
agent, its config, the sudo rule) and is removed at the end of the session.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from allocations import ssh
from allocations.models import Node
from allocations.node_install import SshdSettings
from allocations.services import nodes as node_services

ROOT = Path(__file__).resolve().parents[2]
NVML_REPLAY = ROOT / "tests/fixtures/nvml/h100-sxm-8.json"
JUPYTER_REQUIREMENTS = ROOT / "allocations/agent/node-jupyter-requirements.txt"


@dataclass(frozen=True)
class NodeHost:
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
    sshd: SshdSettings
    unix_id_base: int

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
            # The portal's uid range (NODE_UNIX_ID_BASE + 1 ...): a run's own slice of it.
            "id_min": self.unix_id_base + 1,
            "id_max": self.unix_id_base + 9_999,
        }

    def device(self, minor: int) -> str:
        return f"{self.device_dir}/nvidia{minor}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def node_jupyter_bin() -> str:
    """A JupyterLab venv made from the system's /usr/bin/python3, in a world-readable place
    (accounts cannot reach anything under /root), cached by its pinned requirements."""
    digest = hashlib.sha256(JUPYTER_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = Path(f"/var/tmp/gpu-portal-node-jupyter-{digest}")
    jupyter = venv / "bin/jupyter"
    if not (venv / ".complete").exists():  # venvs hard-code their path: build in place
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", "-r", str(JUPYTER_REQUIREMENTS)],
            check=True,
        )
        os.chmod(venv, 0o755)  # noqa: S103 - node accounts must run this jupyter
        (venv / ".complete").touch()
    return str(jupyter)


def remove_accounts(prefixes: list[str]) -> None:
    for entry in pwd.getpwall():
        if any(entry.pw_name.startswith(p) for p in prefixes):
            subprocess.run(["pkill", "-KILL", "-u", entry.pw_name], check=False)
            for _ in range(30):
                if subprocess.run(["pgrep", "-u", entry.pw_name], capture_output=True).returncode != 0:
                    break
                time.sleep(0.1)
            subprocess.run(["userdel", "-r", "-f", entry.pw_name], capture_output=True, check=False)
    for group in grp.getgrall():
        if any(group.gr_name.startswith(p) for p in prefixes):
            subprocess.run(["groupdel", "-f", group.gr_name], capture_output=True, check=False)


# Device numbers of harmless devices anyone may open (zero, full, random, fuse, tun, hwrng,
# autofs, urandom), one per stand-in GPU: the agent finds a GPU's holders by device number, so
# two GPUs (or a GPU and /dev/null, which every daemon holds) must not share one.
STAND_IN_DEVICES = [(1, 5), (1, 7), (1, 8), (10, 229), (10, 200), (10, 183), (10, 235), (1, 9)]


def make_devices(directory: Path) -> None:
    """Stand-ins for /dev/nvidiaN: character devices of distinct numbers (opening one works)
    that start closed, as a node's driver leaves them with NVreg_DeviceFileMode=0600."""
    directory.mkdir(mode=0o755)
    for minor, (major, number) in enumerate(STAND_IN_DEVICES):
        subprocess.run(
            ["mknod", "-m", "0600", str(directory / f"nvidia{minor}"), "c", str(major), str(number)], check=True
        )


@pytest.fixture(scope="session")
def node_host() -> NodeHost:
    if os.geteuid() != 0:
        pytest.skip("the sshd node stand-in needs root (useradd, sudo rules); CI runs as root")
    missing = [
        b for b in ("/usr/sbin/sshd", "/usr/bin/sudo", "/usr/sbin/useradd", "/usr/sbin/visudo") if not os.path.exists(b)
    ]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install openssh-server sudo (make test installs them as root)")
    rid = secrets.token_hex(3)
    base = Path(f"/run/gpu-portal-test-{rid}")
    base.mkdir(mode=0o755)
    (base / "authorized").mkdir(mode=0o755)
    host_key = keygen(base / "host_ed25519")
    operator_pub = keygen(base / "operator_ed25519")
    (base / "authorized/root").write_text(operator_pub + "\n")
    os.chmod(base / "authorized/root", 0o644)
    port = free_port()
    config = base / "sshd_config"
    (base / "sshd_config.d").mkdir(mode=0o755)
    make_devices(base / "dev")
    config.write_text(
        f"""Include {base}/sshd_config.d/*.conf
Port {port}
ListenAddress 127.0.0.1
HostKey {base}/host_ed25519
PidFile {base}/sshd.pid
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
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], check=True)
    log = open(base / "sshd.log", "wb")
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=log, start_new_session=True)
    wait_for_port(port)
    host = NodeHost(
        address="127.0.0.1",
        port=port,
        host_key=" ".join(host_key.split()[:2]),
        operator_key=str(base / "operator_ed25519"),
        portal_key=str(base / "portal_ed25519"),
        prefix=f"gpt{rid}",
        provisioning_user=f"gpprov{rid}",
        agent_path=f"/usr/local/sbin/gpu-portal-agent-{rid}",
        config_path=f"/etc/gpu-portal-test-{rid}/agent.json",
        state_dir=f"/var/lib/gpu-portal-test-{rid}",
        jupyter_run_dir=str(base / "jupyter"),
        jupyter_bin=node_jupyter_bin(),
        nvml_replay=str(NVML_REPLAY),
        base=base,
        keys_dir=f"/etc/gpu-portal-test-{rid}/authorized_keys",
        managed_group=f"gpt{rid}users",
        device_dir=str(base / "dev"),
        sshd=SshdSettings(
            config=str(config), dropin=str(base / "sshd_config.d/gpu-portal.conf"), pid_file=str(base / "sshd.pid")
        ),
        # Test runs side by side on one machine must not hand out the same uids.
        unix_id_base=10_000_000 + secrets.randbelow(10_000) * 10_000,
    )
    ssh.ensure_key_pair(host.portal_key)
    yield host
    remove_accounts([host.prefix, host.provisioning_user])
    os.killpg(sshd.pid, signal.SIGTERM)
    sshd.wait(timeout=10)
    log.close()
    for path in (host.agent_path, f"/etc/sudoers.d/gpu-portal-{host.provisioning_user}"):
        Path(path).unlink(missing_ok=True)
    shutil.rmtree(Path(host.config_path).parent, ignore_errors=True)
    shutil.rmtree(host.state_dir, ignore_errors=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def node_settings(settings, node_host):
    settings.PROVISIONING_SSH_KEY = node_host.portal_key
    settings.NODE_ACCOUNT_PREFIX = node_host.prefix
    settings.NODE_UNIX_ID_BASE = node_host.unix_id_base
    settings.PROVISIONING_BACKOFF_SECONDS = 1
    return settings


def bootstrap_node(node_host: NodeHost, hostname: str = "gpu-h100-test") -> Node:
    """What an operator does: register, pin the confirmed key, install the agent, read the GPUs."""
    node = node_services.node_register(
        hostname=hostname,
        address=node_host.address,
        ssh_port=node_host.port,
        ssh_username=node_host.provisioning_user,
        gpu_model="H100-80GB",
        agent_path=node_host.agent_path,
    )
    presented = node_services.node_fetch_host_key(node=node)
    node = node_services.node_pin_host_key(
        node=node, key_line=presented, confirmed_fingerprint=ssh.fingerprint(node_host.host_key)
    )
    node_services.node_install_agent(
        node=node,
        operator_user="root",
        operator_key=node_host.operator_key,
        provisioning_public_key=ssh.ensure_key_pair(node_host.portal_key),
        config_path=node_host.config_path,
        agent_config=node_host.agent_config(),
        sshd=node_host.sshd,
    )
    node_services.node_inventory(node=node)
    node.refresh_from_db()
    return node


@pytest.fixture
def gpu_node(db, node_settings, node_host) -> Node:
    return bootstrap_node(node_host)
