"""Operators register a node: the host key is pinned only after confirmation, the agent is
installed over SFTP with a sudo rule for exactly that program, and NVML fills the GPUs."""

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from allocations import ssh
from allocations.models import Gpu, Node
from allocations.node_install import SshdSettings, agent_version, installer_program
from allocations.services import nodes as node_services
from portal.errors import PortalError
from tests.allocations.conftest import bootstrap_node, free_port


def test_bootstrap_pins_the_key_installs_the_agent_and_reads_the_gpus(db, node_settings, node_host):
    node = bootstrap_node(node_host)
    assert node.host_key_fingerprint == ssh.fingerprint(node_host.host_key)
    assert node.status == Node.Status.ONLINE
    assert node.agent_version == agent_version()
    gpus = list(node.gpus.order_by("index"))
    assert [g.index for g in gpus] == list(range(8))
    assert {g.model_id for g in gpus} == {"H100-80GB"}
    assert gpus[0].memory_mib == 81559
    assert gpus[0].uuid.startswith("GPU-")
    rule = Path(f"/etc/sudoers.d/gpu-portal-{node_host.provisioning_user}").read_text()
    commands = [f"sha256:{node.agent_sha256} {node_host.agent_path} {verb}" for verb in sorted(ssh.AGENT_VERBS)]
    assert rule == f"{node_host.provisioning_user} ALL=(root) NOPASSWD: {', '.join(commands)}\n"


def test_inventory_twice_keeps_one_row_per_gpu(gpu_node):
    node_services.node_inventory(node=gpu_node)
    assert Gpu.objects.filter(node=gpu_node).count() == 8


def test_a_wrong_confirmation_pins_nothing(db, node_settings, node_host):
    node = node_services.node_register(
        hostname="gpu-unconfirmed", address=node_host.address, ssh_port=node_host.port,
        ssh_username=node_host.provisioning_user, gpu_model="H100-80GB",
    )  # fmt: skip
    presented = node_services.node_fetch_host_key(node=node)
    with pytest.raises(PortalError):
        node_services.node_pin_host_key(node=node, key_line=presented, confirmed_fingerprint="SHA256:wrong")
    node.refresh_from_db()
    assert node.host_key == ""


def test_the_provisioning_account_can_run_the_agent_and_nothing_else(gpu_node, node_host):
    with node_services.connect(gpu_node) as conn:
        assert conn.agent("version")["version"] == agent_version()
        status, _out, err = conn._exec("sudo -n /usr/bin/id -u", b"", 10)
    assert status != 0
    assert b"password is required" in err


def test_a_changed_agent_file_is_refused_by_sudo(gpu_node, node_host):
    original = Path(node_host.agent_path).read_bytes()
    try:
        Path(node_host.agent_path).write_bytes(original + b"\n# tampered\n")
        with node_services.connect(gpu_node) as conn, pytest.raises(ssh.SshError) as exc:
            conn.agent("version")
        assert exc.value.permanent
    finally:
        Path(node_host.agent_path).write_bytes(original)


def test_the_add_node_command_pins_with_the_verified_fingerprint(db, node_settings, node_host, capsys):
    from django.core.management import call_command

    call_command(
        "add_node", "gpu-cmd", node_host.address, port=node_host.port, user=node_host.provisioning_user,
        gpu_model="H100-80GB", fingerprint=ssh.fingerprint(node_host.host_key),
    )  # fmt: skip
    assert Node.objects.get(hostname="gpu-cmd").host_key == node_host.host_key
    steps = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert [x[:5] for x in steps] == ["[1/2]", "[2/2]"] and all("gpu-cmd" in x and x.endswith(" s)") for x in steps)


def test_add_node_with_a_registered_hostname_and_other_settings_refuses_and_names_them(db):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    Node.objects.create(hostname="gpu-taken", address="10.0.0.5", ssh_port=22, gpu_model="H100-80GB")
    with pytest.raises(CommandError) as refused:
        call_command("add_node", "gpu-taken", "10.0.0.6", port=2222, gpu_model="H100-80GB", fingerprint="SHA256:x")
    assert "address 10.0.0.5 (you typed 10.0.0.6)" in str(refused.value)
    assert "--port 22 (you typed 2222)" in str(refused.value)
    node = Node.objects.get(hostname="gpu-taken")
    assert (node.address, node.ssh_port) == ("10.0.0.5", 22)


def test_install_agent_on_a_machine_without_gpus_says_how_to_go_on_and_the_node_says_why(
    db, node_settings, node_host, capsys
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from allocations import devnode

    node = bootstrap_node(node_host, hostname="gpu-no-nvml")
    args = devnode.install_agent_args(node_host, node.hostname)
    del args[args.index("--nvml-replay") : args.index("--nvml-replay") + 2]  # as on a real machine without GPUs
    try:
        with pytest.raises(CommandError) as refused:
            call_command(*args)
        assert "cannot read its GPUs" in str(refused.value)
        assert "--nvml-replay /ABSOLUTE/PATH" in str(refused.value)  # an absolute path: the agent needs one
        node.refresh_from_db()
        assert node.status == "offline"
        assert "the agent cannot read the GPUs" in node.status_reason
        steps = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
        assert [x[:5] for x in steps] == ["[1/2]", "[2/2]"]  # it says how far it got
        assert "installing the agent" in steps[0] and "reading the GPUs" in steps[1] and steps[1].endswith(" s)")
    finally:
        devnode.node_bootstrap(node_host, hostname="gpu-no-nvml")  # the session's node replays NVML again


# -- issue 7: installing and upgrading ------------------------------------------------------


def test_upgrading_the_agent_does_not_make_concurrent_verbs_fail_for_good(gpu_node, node_host):
    """The installer replaced the agent file before the sudo rule pinned to the old digest: a
    verb run in between was refused ('a password is required'), which the portal treats as a
    missing agent: permanent, every open task of the node failed, the node taken offline."""
    errors: list[str] = []
    calls = [0]
    stop = threading.Event()

    def hammer():
        from django.db import connections

        with node_services.connect(gpu_node) as conn:
            while not stop.is_set():
                calls[0] += 1
                try:
                    conn.agent("version")
                except ssh.SshError as exc:
                    errors.append(f"{exc.code}: {exc.message[:80]}")
        connections.close_all()

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for n in range(3):  # an upgrade = another agent digest (here: another config path baked in)
            node_services.node_install_agent(
                node=gpu_node, operator_user="root", operator_key=node_host.operator_key,
                provisioning_public_key=ssh.ensure_key_pair(node_host.portal_key),
                config_path=node_host.config_path if n % 2 else node_host.config_path.replace(".json", "2.json"),
                agent_config=node_host.agent_config(), sshd=node_host.sshd,
            )  # fmt: skip
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert calls[0] > 3
    assert not errors, f"{len(errors)} of {calls[0]} concurrent calls refused: {sorted(set(errors))}"


def test_installing_with_an_existing_operator_account_as_provisioning_user_is_refused(gpu_node, node_host, tmp_path):
    """Operator mistake: `--provisioning-user` names an existing local account (an admin with a
    password and their own key). The installer wiped its password, replaced its
    authorized_keys with the portal's key and gave it the agent's sudo rule."""
    admin = f"{node_host.prefix}ops"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-p", "$6$salt$hash", "--", admin], check=True)
    own = tmp_path / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True)
    Path(f"/home/{admin}/.ssh").mkdir(mode=0o700)
    Path(f"/home/{admin}/.ssh/authorized_keys").write_text(own.with_suffix(".pub").read_text())
    subprocess.run(["chown", "-R", f"{admin}:{admin}", f"/home/{admin}/.ssh"], check=True)
    try:
        program, _digest = installer_program(
            agent_path=node_host.agent_path, config_path=node_host.config_path, config=node_host.agent_config(),
            provisioning_user=admin, public_key=ssh.ensure_key_pair(node_host.portal_key), sshd=node_host.sshd,
        )  # fmt: skip
        target = node_services.target_for(gpu_node, username="root")
        with ssh.Connection(target, node_host.operator_key) as conn, pytest.raises(ssh.SshError) as exc:
            conn.run_python_as_root(program, use_sudo=False, what="install")
        assert "was not created by this installer" in exc.value.message
        shadow = subprocess.run(["getent", "shadow", admin], capture_output=True, text=True).stdout.split(":")[1]
        keys = Path(f"/home/{admin}/.ssh/authorized_keys").read_text()
        assert shadow == "$6$salt$hash" and keys == own.with_suffix(".pub").read_text()
        assert not Path(f"/etc/sudoers.d/gpu-portal-{admin}").exists()
    finally:
        Path(f"/etc/sudoers.d/gpu-portal-{admin}").unlink(missing_ok=True)


def test_a_job_connecting_while_the_nodes_sshd_reloads_gets_through(gpu_node, node_host):
    """sshd re-executes itself on SIGHUP (the installer reloads it; so does an operator's
    `systemctl reload ssh`): for a moment connections are refused or reset mid-handshake. Such
    a moment failed the whole job (CI: 'Connection reset by peer' from a node that was fine)."""
    pid = int(Path(node_host.sshd.pid_file).read_text())
    for _ in range(5):
        os.kill(pid, signal.SIGHUP)  # re-exec keeps the pid
        with node_services.connect(gpu_node) as conn:
            assert conn.agent("version")["version"]


def test_a_node_that_keeps_refusing_fails_after_a_few_quick_tries(db, node_settings):
    node = Node.objects.create(hostname="gpu-down", address="127.0.0.1", ssh_port=free_port(), gpu_model="H100-80GB")
    node.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    with pytest.raises(ssh.SshError) as exc:
        node_services.connect(node)
    assert exc.value.code == "unreachable" and not exc.value.permanent
    assert "cannot reach" in exc.value.message


# -- relative paths in the agent's configuration ---------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--jupyter-bin", "jupyter"), ("--jupyter-run-dir", "run/jupyter"), ("--nvml-replay", "h100.json"),
     ("--gpu-device-pattern", "nvidia{minor}"), ("--state-dir", "./state")],
)  # fmt: skip
def test_install_agent_refuses_a_relative_path_before_touching_the_node(db, monkeypatch, option, value):
    """The agent refuses a configuration with any relative path (bad_config for every verb):
    install_agent used to install it anyway and leave a node where nothing worked."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    Node.objects.create(hostname="gpu-rel", address="192.0.2.9", gpu_model="H100-80GB", host_key="ssh-ed25519 AAAAx")

    def touched(**_kwargs):
        raise AssertionError("the node was contacted")

    monkeypatch.setattr(node_services, "node_install_agent", touched)
    monkeypatch.setattr(ssh, "ensure_key_pair", touched)
    monkeypatch.setenv("LANGUAGE", "en")
    with pytest.raises(CommandError) as refused:
        call_command("install_agent", "gpu-rel", "--operator-key", "/root/.ssh/id_ed25519", option, value)
    assert f"{option} must be an absolute path on the node" in str(refused.value)
    assert value in str(refused.value)

    monkeypatch.setenv("LANGUAGE", "ko")
    with pytest.raises(CommandError) as in_korean:
        call_command("install_agent", "gpu-rel", "--operator-key", "/root/.ssh/id_ed25519", option, value)
    assert "절대 경로" in str(in_korean.value) and option in str(in_korean.value)


def test_install_agent_accepts_an_empty_nvml_replay_and_says_to_give_an_absolute_replay_path(db):
    from allocations.agent.gpu_portal_agent.common import relative_path_settings
    from allocations.management.commands.install_agent import NO_NVML

    assert relative_path_settings({"nvml_replay": "", "jupyter_bin": "/opt/j/bin/jupyter"}) == []
    assert "--nvml-replay /" in str(NO_NVML)  # the suggestion itself is an absolute path


@pytest.mark.parametrize("name", ["jupyter_bin", "jupyter_run_dir", "nvml_replay", "shell", "gpu_device_pattern"])
def test_the_installer_refuses_a_relative_path_for_any_setting_the_agent_needs_absolute(db, name):
    """The installer program (run as root on the node) checks again what the portal sent: a
    relative path would leave an agent that refuses every verb."""
    import base64
    import json

    from allocations.agent import gpu_portal_install as installer

    program, _digest = installer_program(
        agent_path="/usr/local/lib/gpu-portal/agent", config_path="/etc/gpu-portal/agent.json",
        config={"jupyter_bin": "/opt/j/bin/jupyter", "nvml_replay": "", name: "relative/path"},
        provisioning_user="gpuportal", public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTest000 p",
        sshd=SshdSettings(),
    )  # fmt: skip
    encoded = program.decode().rsplit('main("', 1)[1].split('"', 1)[0]
    data = json.loads(base64.b64decode(encoded))
    with pytest.raises(installer.InstallError, match=f"{name} must be an absolute path"):
        installer.check_input(data)
    data["config"][name] = "" if name == "nvml_replay" else "/an/absolute/path"
    installer.check_input(data)  # the same input with an absolute path (or no replay) passes


def test_the_installer_checks_the_same_path_settings_as_the_agent():
    from allocations.agent import gpu_portal_install as installer
    from allocations.agent.gpu_portal_agent.common import PATH_SETTINGS

    assert set(installer.AGENT_PATH_SETTINGS) == set(PATH_SETTINGS)
