"""The node agent's trust boundary, attacked on the real sshd stand-in as the provisioning
account, as another researcher on the same node and as a revoked user would. Each test is a
scenario that succeeded against the first agent (docs/nodes.md, "What a user on the node can
and cannot do")."""

import base64
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from django.utils import timezone

from allocations import ssh
from allocations.jobs import node_tasks_job
from allocations.models import Grant, NodeAccount, ProvisioningTask, UnixId
from allocations.node_install import installer_program
from allocations.services import grants as grant_services
from allocations.services import nodes as node_services
from allocations.services.keys import sshkey_add, sshkey_remove
from allocations.services.unix_ids import unix_uid_for
from tests.allocations.helpers import (
    approved_grant,
    as_provisioning,
    can_lift_limits,
    device_acl_uids,
    live_processes,
    provision,
    ssh_as,
    user_with_key,
)
from tests.factories import ApplicationFactory, CallFactory, UserFactory

T = ProvisioningTask.State


def keypair(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def active(app, days: int = 30) -> Grant:
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=days)))
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    return grant


@pytest.fixture
def researcher(gpu_node, tmp_path):
    """An active 4-GPU grant: (grant, unix name, private key)."""
    app, key = user_with_key(tmp_path)
    grant = active(app)
    return grant, NodeAccount.objects.get(user=app.principal_investigator).username, key


def device_opens(node, username: str, key: Path, device: str) -> bool:
    _status, out = ssh_as(node, username, key, f"(: < {device}) 2>/dev/null && echo open || echo refused")
    return out.strip() == "open"


# -- 1. the provisioning account cannot become root -----------------------------------------


def test_the_provisioning_account_cannot_run_bootstrap_through_sudo(gpu_node, node_host):
    """The attack: `bootstrap` with agent_path=/usr/bin/id gave a new user sudo to `id`."""
    payload = {
        "provisioning_user": node_host.prefix + "evil",
        "public_key": ssh.ensure_key_pair(node_host.portal_key),
        "agent_path": "/usr/bin/id",
    }
    status, output = as_provisioning(gpu_node, f"sudo -n {node_host.agent_path} bootstrap", payload)
    assert status != 0
    assert "password is required" in output
    assert not Path(f"/etc/sudoers.d/gpu-portal-{node_host.prefix}evil").exists()
    # Nor any argument sudo was not told about, nor the agent with no verb at all.
    for command in (f"sudo -n {node_host.agent_path} version extra", f"sudo -n {node_host.agent_path}"):
        assert "password is required" in as_provisioning(gpu_node, command)[1]


def test_the_sudo_rule_lists_the_agents_verbs_and_nothing_else(gpu_node, node_host):
    rule = Path(f"/etc/sudoers.d/gpu-portal-{node_host.provisioning_user}").read_text()
    allowed = {part.split()[-1] for part in rule.split("NOPASSWD:")[1].split(",")}
    assert allowed == ssh.AGENT_VERBS
    assert "bootstrap" not in rule
    assert not allowed & ssh.NODE_LOCAL_VERBS  # push: only root's timer sends samples with the token


# -- 2. re-installing cannot be hijacked ----------------------------------------------------


def test_installing_stages_nothing_where_a_node_user_can_write(gpu_node, node_host):
    """The attack: a user swapped the upload in the node's /tmp before root installed it."""
    before = {p: set(os.listdir(p)) for p in ("/tmp", "/var/tmp", "/dev/shm")}
    planted = Path(f"/tmp/gpu-portal-agent-{gpu_node.pk}.upload")
    planted.write_text("import os\nos.system('touch /tmp/owned-by-attacker')\n")
    try:
        node_services.node_install_agent(
            node=gpu_node, operator_user="root", operator_key=node_host.operator_key,
            provisioning_public_key=ssh.ensure_key_pair(node_host.portal_key), config_path=node_host.config_path,
            agent_config=node_host.agent_config(), sshd=node_host.sshd,
        )  # fmt: skip
    finally:
        planted.unlink()
    after = {p: set(os.listdir(p)) for p in before}
    assert all(not {n for n in after[p] - before[p] if "gpu-portal" in n} for p in before)
    assert not Path("/tmp/owned-by-attacker").exists()
    gpu_node.refresh_from_db()
    assert hashlib.sha256(Path(node_host.agent_path).read_bytes()).hexdigest() == gpu_node.agent_sha256


def test_an_agent_altered_on_the_way_is_not_installed(gpu_node, node_host):
    program, _digest = installer_program(
        agent_path=node_host.agent_path + "-tampered", config_path=node_host.config_path,
        config=node_host.agent_config(), provisioning_user=node_host.provisioning_user,
        public_key=ssh.ensure_key_pair(node_host.portal_key), sshd=node_host.sshd,
    )  # fmt: skip
    head, _, call = program.decode().rpartition('sys.exit(main("')
    data = json.loads(base64.b64decode(call.split('"')[0]))
    data["agent_b64"] = base64.b64encode(base64.b64decode(data["agent_b64"]) + b"\nos.system('id')\n").decode()
    tampered = (head + f'sys.exit(main("{base64.b64encode(json.dumps(data).encode()).decode()}"))\n').encode()
    target = node_services.target_for(gpu_node, username="root")
    with ssh.Connection(target, node_host.operator_key) as conn, pytest.raises(ssh.SshError) as exc:
        conn.run_python_as_root(tampered, use_sudo=False, what="install")
    assert "expected" in exc.value.message
    assert not Path(node_host.agent_path + "-tampered").exists()


# -- 3. only accounts the portal created ----------------------------------------------------


def test_the_agent_refuses_accounts_it_did_not_create(gpu_node, node_host, tmp_path):
    """The attack: an attacker's key installed on `gpprov` (or an operator's `gpuadmin`)."""
    attacker = keypair(tmp_path / "attacker")
    keys = [attacker.with_suffix(".pub").read_text().strip()]
    operator_account = f"{node_host.prefix}999999"  # the portal's form, made by hand on the node
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", operator_account], check=True)
    subprocess.run(["usermod", "-p", "*", operator_account], check=True)
    with node_services.connect(gpu_node) as conn:
        for name in (node_host.provisioning_user, node_host.prefix + "admin", operator_account, "root"):
            with pytest.raises(ssh.SshError) as exc:
                conn.agent("set-keys", {"username": name, "keys": keys})
            assert exc.value.code in {"bad_username", "not_managed"}, exc.value.message
        with pytest.raises(ssh.SshError) as exc:
            conn.agent("set-keys", {"username": f"{node_host.prefix}1\n", "keys": keys})
        assert exc.value.code == "bad_username"
        with pytest.raises(ssh.SshError):
            conn.agent("revoke", {"username": operator_account})
    for name in (node_host.provisioning_user, operator_account):
        with pytest.raises(paramiko.AuthenticationException):
            ssh_as(gpu_node, name, attacker, "true")


# -- 8. revoke ends every process -----------------------------------------------------------

FORK_AND_EXIT = (
    "setsid nohup /usr/bin/python3 -c 'import os, time\n"
    "while True:\n"
    "    if os.fork():\n"
    "        os._exit(0)\n"
    "    time.sleep(0.002)' >/dev/null 2>&1 < /dev/null &"
)


def test_revoke_ends_processes_that_fork_and_exit_meanwhile(researcher, gpu_node):
    grant, username, key = researcher
    for _ in range(3):
        ssh_as(gpu_node, username, key, FORK_AND_EXIT)
    ssh_as(gpu_node, username, key, "setsid nohup sleep 600 >/dev/null 2>&1 < /dev/null &")
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-u", username], capture_output=True).returncode == 0

    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    task = ProvisioningTask.objects.get(grant=grant, kind="revoke")
    assert task.state == T.SUCCEEDED, task.last_error
    assert task.result["killed"] >= 1
    assert "sleep" in {p["command"] for p in task.result["processes"]}
    time.sleep(1)  # nothing that escaped the kill can have come back
    ps = subprocess.run(["ps", "-u", username, "-o", "stat=,pid=,comm="], capture_output=True, text=True).stdout
    assert [line for line in ps.splitlines() if not line.strip().startswith("Z")] == []  # zombies only wait


# -- 9. keys live in a root-owned file ------------------------------------------------------


def test_keys_in_the_home_directory_grant_nothing(researcher, gpu_node, tmp_path):
    """The attack: Debian's sshd also reads ~/.ssh/authorized_keys2."""
    _grant, username, key = researcher
    own = keypair(tmp_path / "own")
    pub = own.with_suffix(".pub").read_text().strip()
    ssh_as(gpu_node, username, key, f"echo '{pub}' >> ~/.ssh/authorized_keys2; echo '{pub}' >> ~/.ssh/authorized_keys")
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, username, own, "true")


def test_a_removed_key_no_longer_logs_in(researcher, gpu_node, tmp_path, django_capture_on_commit_callbacks):
    grant, username, key = researcher
    user = grant.application.principal_investigator
    second = keypair(tmp_path / "second")
    with django_capture_on_commit_callbacks(execute=True):
        sshkey_add(user=user, text=second.with_suffix(".pub").read_text(), name="second")
    node_tasks_job(gpu_node.pk)
    # The user copies the first key to authorized_keys2 before it is removed in the portal.
    ssh_as(gpu_node, username, key, "mkdir -p ~/.ssh; cat ~/.ssh/authorized_keys >> ~/.ssh/authorized_keys2 || true")
    with django_capture_on_commit_callbacks(execute=True):
        sshkey_remove(ssh_key=user.ssh_keys.get(name="laptop"))
    node_tasks_job(gpu_node.pk)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, username, key, "true")
    assert ssh_as(gpu_node, username, second, "true")[0] == 0


# -- 10. nothing in a home can block the agent ----------------------------------------------


def test_a_fifo_in_the_home_does_not_stop_repairs(researcher, gpu_node):
    """The attack: `mkfifo ~/.ssh/environment` blocked `status` and reconcile for the node."""
    _grant, username, key = researcher
    ssh_as(gpu_node, username, key, "rm -f ~/.ssh/environment; mkfifo ~/.ssh/environment")
    started = time.monotonic()
    created = grant_services.reconcile_node(node=gpu_node)
    assert time.monotonic() - started < 20
    assert "set-gpus" in {t.kind for t in created}
    node_tasks_job(gpu_node.pk)
    assert ProvisioningTask.objects.filter(state=T.FAILED).count() == 0
    env = Path(f"/home/{username}/.ssh/environment")
    assert env.is_file() and not env.is_symlink()


def test_a_link_in_the_home_is_not_followed(researcher, gpu_node):
    _grant, username, key = researcher
    ssh_as(gpu_node, username, key, "rm -f ~/.ssh/environment; ln -s /etc/shadow ~/.ssh/environment")
    with node_services.connect(gpu_node) as conn:
        seen = conn.agent("status", {"usernames": [username]})["accounts"][username]
    assert seen["cuda_visible_devices"] is None  # not root's /etc/shadow


def test_a_file_size_limit_set_by_the_provisioning_account_never_leaves_a_users_file_cut_short(
    researcher, gpu_node, node_host
):
    """sudo passes the caller's limits on: under `prlimit --fsize=16` the agent wrote the first
    16 bytes of ~/.ssh/environment and answered ok, leaving the user a cut-off
    CUDA_VISIBLE_DEVICES. The agent lifts the limit for its run; where root cannot (no
    CAP_SYS_RESOURCE) it answers file_too_large and the user's file stays as it was."""
    grant, username, _key = researcher
    gpus = grant.gpu_uuids()
    environment = Path(f"/home/{username}/.ssh/environment")
    expected = f"CUDA_VISIBLE_DEVICES={','.join(gpus)}\n"
    assert environment.read_text() == expected  # written by provisioning
    environment.write_text("CUDA_VISIBLE_DEVICES=\n")  # to see whether the agent writes it again
    status, output = as_provisioning(
        gpu_node, f"prlimit --fsize=16 sudo -n {node_host.agent_path} set-gpus", {"username": username, "gpus": gpus}
    )
    if can_lift_limits():
        assert status == 0 and '"ok": true' in output, output
        assert environment.read_text() == expected
    else:
        assert status != 0 and '"error": "file_too_large"' in output, output
        assert environment.read_text() == "CUDA_VISIBLE_DEVICES=\n"
    assert not list(environment.parent.glob(".*.gpu-portal*.tmp"))  # nothing half-written left


def test_a_soft_file_size_limit_is_lifted_even_where_root_cannot_raise_a_hard_one(researcher, gpu_node, node_host):
    """`prlimit --fsize=16:1000000`: a soft limit below a finite hard one. sudo keeps it (it
    raises a soft limit only where the hard one is unlimited), and root needs no privilege to
    raise a soft limit to the hard one, so this runs everywhere, this container included: the
    agent lifts it, the user's ~/.ssh/environment is written in full and the answer is ok.
    Without the lift (or with the first one, which tried only unlimited) the write stops at
    16 bytes: file_too_large."""
    grant, username, _key = researcher
    gpus = grant.gpu_uuids()
    environment = Path(f"/home/{username}/.ssh/environment")
    expected = f"CUDA_VISIBLE_DEVICES={','.join(gpus)}\n"
    environment.write_text("CUDA_VISIBLE_DEVICES=\n")
    status, output = as_provisioning(
        gpu_node,
        f"prlimit --fsize=16:1000000 sudo -n {node_host.agent_path} set-gpus",
        {"username": username, "gpus": gpus},
    )
    assert status == 0 and '"ok": true' in output, output
    assert environment.read_text() == expected
    assert not list(environment.parent.glob(".*.gpu-portal*.tmp"))


# -- 12 and 6. GPUs let in their grant's members' uids ---------------------------------------


def test_a_user_opens_their_own_gpus_and_never_another_grants(researcher, gpu_node, node_host, tmp_path):
    grant, username, key = researcher
    other_app, other_key = user_with_key(tmp_path, name="neighbour")
    other = active(other_app)
    other_name = NodeAccount.objects.get(user=other_app.principal_investigator).username
    mine = [a.gpu.index for a in grant.assignments.all()]
    theirs = [a.gpu.index for a in other.assignments.all()]
    assert not set(mine) & set(theirs)

    # CUDA_VISIBLE_DEVICES unset or not: the device files decide.
    assert device_opens(gpu_node, username, key, node_host.device(mine[0]))
    assert not device_opens(gpu_node, username, key, node_host.device(theirs[0]))
    uid = unix_uid_for(grant.application.principal_investigator)
    st = os.stat(node_host.device(mine[0]))
    assert (st.st_uid, st.st_gid, device_acl_uids(node_host.device(mine[0]))) == (0, 0, [uid])
    assert device_opens(gpu_node, other_name, other_key, node_host.device(theirs[0]))
    assert not device_opens(gpu_node, other_name, other_key, node_host.device(mine[0]))

    grant_services.grant_revoke(grant=grant, actor=None, reason="ended early")
    node_tasks_job(gpu_node.pk)
    for index in mine:
        st = os.stat(node_host.device(index))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
        assert device_acl_uids(node_host.device(index)) == []
    assert not device_opens(gpu_node, other_name, other_key, node_host.device(mine[0]))
    assert device_opens(gpu_node, other_name, other_key, node_host.device(theirs[0]))


def test_two_grants_of_one_researcher_on_one_node_add_up(researcher, gpu_node, node_host):
    grant, username, key = researcher
    user = grant.application.principal_investigator
    second_app = ApplicationFactory(
        call=CallFactory(), organisation=grant.organisation, principal_investigator=user, gpu_count=4, gpu_hours=1000
    )
    second = active(second_app)
    both = [a.gpu.uuid for g in (grant, second) for a in g.assignments.order_by("gpu__index")]
    _status, out = ssh_as(gpu_node, username, key, "echo $CUDA_VISIBLE_DEVICES")
    assert sorted(out.strip().split(",")) == sorted(both)
    for g in (grant, second):
        assert device_opens(gpu_node, username, key, node_host.device(g.assignments.first().gpu.index))

    grant_services.grant_revoke(grant=second, actor=None, reason="done")
    node_tasks_job(gpu_node.pk)
    _status, out = ssh_as(gpu_node, username, key, "echo $CUDA_VISIBLE_DEVICES")
    assert out.strip().split(",") == [a.gpu.uuid for a in grant.assignments.order_by("gpu__index")]
    assert not device_opens(gpu_node, username, key, node_host.device(second.assignments.first().gpu.index))
    assert device_opens(gpu_node, username, key, node_host.device(grant.assignments.first().gpu.index))


# -- 16. one uid per person, allocated by the portal ----------------------------------------


def test_accounts_get_the_uid_the_portal_allocated_not_the_nodes_next_free_one(researcher, gpu_node, settings):
    grant, username, key = researcher
    user = grant.application.principal_investigator
    uid = unix_uid_for(user)
    assert uid > settings.NODE_UNIX_ID_BASE
    _status, out = ssh_as(gpu_node, username, key, "id -u; id -g")
    assert out.split() == [str(uid), str(uid)]
    # The teammate gets another uid, and the same person keeps theirs for every later account.
    assert unix_uid_for(UserFactory()) not in {uid, None}
    assert UnixId.objects.get(user=user).number == uid


def test_a_uid_taken_on_the_node_is_refused_not_papered_over(gpu_node, tmp_path, settings):
    app, _key = user_with_key(tmp_path)
    uid = unix_uid_for(app.principal_investigator)
    squatter = f"sq{uid}"
    subprocess.run(["useradd", "-M", "-u", str(uid), squatter], check=True, capture_output=True)
    try:
        today = timezone.localdate()
        grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=5)))
        task = ProvisioningTask.objects.get(grant=grant, kind="ensure-account")
        assert task.state == T.FAILED
        assert f"uid {uid} already belongs to {squatter}" in task.last_error
        assert grant.status == Grant.Status.PROVISIONING
        assert f"uid {uid} already belongs to {squatter}" in grant.status_reason
        assert subprocess.run(["id", "-u", squatter], capture_output=True, text=True).stdout.strip() == str(uid)
    finally:
        subprocess.run(["userdel", "-f", squatter], capture_output=True)


# -- issue 7: revocation and GPU release cannot be dodged ------------------------------------


@pytest.mark.parametrize(
    "trick", ["mkdir -p ~/.ssh/authorized_keys/x", "rm -f ~/.ssh/environment; mkdir ~/.ssh/environment"]
)
def test_a_user_cannot_make_their_revocation_fail_with_a_directory_in_their_ssh_folder(
    researcher, gpu_node, node_host, trick
):
    """A directory named authorized_keys or environment made `revoke` die (IsADirectoryError)
    before `usermod -L` and the kill loop."""
    grant, username, key = researcher
    ssh_as(gpu_node, username, key, trick)
    ssh_as(gpu_node, username, key, "setsid nohup sleep 600 >/dev/null 2>&1 < /dev/null &")
    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    tasks = {t.kind: (t.state, t.last_error[:100]) for t in ProvisioningTask.objects.filter(grant=grant)}
    assert tasks["revoke"][0] == T.SUCCEEDED, tasks
    assert live_processes(username) == []
    assert subprocess.run(["getent", "shadow", username], capture_output=True, text=True).stdout.split(":")[1][0] == "!"


def test_revoke_ends_processes_hidden_in_a_user_and_pid_namespace(researcher, gpu_node):
    """Unprivileged user namespaces are on (Debian's default): a pid namespace whose init forks
    and exits in a loop, plus a plain sleeper inside it."""
    grant, username, key = researcher
    script = "import os, time\nwhile True:\n    if os.fork():\n        os._exit(0)\n    time.sleep(0.002)\n"
    ssh_as(gpu_node, username, key, f"cat > ~/forker.py <<'PY'\n{script}PY")
    ssh_as(
        gpu_node, username, key,
        "setsid nohup unshare -Urpf sh -c 'sleep 600 & python3 ~/forker.py; wait' >/dev/null 2>&1 </dev/null &",
    )  # fmt: skip
    time.sleep(1)
    assert subprocess.run(["pgrep", "-u", username, "sleep"], capture_output=True).returncode == 0
    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    time.sleep(1)
    assert live_processes(username) == []


def test_releasing_a_grants_gpus_does_not_kill_the_nodes_own_services(researcher, gpu_node, node_host):
    """nvidia-persistenced (and exporters such as dcgm) run as their own non-root user and hold
    every /dev/nvidiaN open: only processes of accounts the agent made are ever killed."""
    grant, _username, _key = researcher
    device = node_host.device(grant.assignments.first().gpu.index)
    service = subprocess.Popen(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sleep", "600"],
        stdin=open(device, "rb"),  # opened as root, like the daemon does before dropping privileges
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        grant_services.grant_revoke(grant=grant, actor=None, reason="ended")
        node_tasks_job(gpu_node.pk)
        task = ProvisioningTask.objects.get(grant=grant, kind="release-gpus")
        assert task.state == T.SUCCEEDED, task.last_error
        assert service.poll() is None, f"the node's own service (uid nobody) was killed: {task.result}"
    finally:
        if service.poll() is None:
            service.kill()
        service.wait()


HOLD_THROUGH_A_BIND_MOUNT = (
    "mkdir -p ~/x; setsid nohup unshare -Urm sh -c "
    "'mount --bind {devdir} ~/x && exec 3< ~/x/{devname} && echo $$ > {out} && exec sleep 600' "
    ">/dev/null 2>&1 < /dev/null &"
)


def test_a_process_holding_a_released_gpu_is_killed_whatever_path_it_opened_it_by(researcher, gpu_node, node_host):
    """A user with two grants on the node keeps the account when one ends; whatever still holds
    that grant's GPUs is killed, even opened through a bind mount in the user's own user+mount
    namespace (its /proc/PID/fd link reads ~/x/nvidiaN, not the device's path)."""
    grant, username, key = researcher
    user = grant.application.principal_investigator
    second = active(
        ApplicationFactory(
            call=CallFactory(), organisation=grant.organisation, principal_investigator=user, gpu_count=4,
            gpu_hours=1000,
        )
    )  # fmt: skip
    device = node_host.device(second.assignments.first().gpu.index)
    out = f"/home/{username}/holder.pid"
    command = HOLD_THROUGH_A_BIND_MOUNT.format(devdir=node_host.device_dir, devname=Path(device).name, out=out)
    ssh_as(gpu_node, username, key, command)
    for _ in range(50):
        if Path(out).exists() and Path(out).read_text():
            break
        time.sleep(0.1)
    pid = int(Path(out).read_text())
    assert os.stat(f"/proc/{pid}/fd/3").st_rdev == os.stat(device).st_rdev  # it holds the device

    grant_services.grant_revoke(grant=second, actor=None, reason="ended")
    node_tasks_job(gpu_node.pk)
    task = ProvisioningTask.objects.get(grant=second, kind="release-gpus")
    assert task.state == T.SUCCEEDED, task.last_error
    time.sleep(0.3)
    try:
        holds = Path(f"/proc/{pid}/fd/3").exists() and os.stat(f"/proc/{pid}/fd/3").st_rdev == os.stat(device).st_rdev
    except FileNotFoundError:
        holds = False
    try:
        assert not holds, f"pid {pid} of {username} still holds {device} of the ended grant ({task.result})"
        assert NodeAccount.objects.get(user=user).state == NodeAccount.State.ACTIVE  # the first grant keeps it
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)


# -- issue 7: the provisioning key stays inside the portal's uids ---------------------------


def test_the_provisioning_account_cannot_become_a_uid_outside_the_portals_range(gpu_node, node_host, tmp_path):
    """Whoever holds the provisioning key could create a managed account with any free uid >=
    1000 (an orphaned owner on a shared filesystem, an LDAP uid while LDAP is down), install
    their own key and log in as that uid."""
    victim_uid = 4242
    assert subprocess.run(["getent", "passwd", str(victim_uid)], capture_output=True).returncode != 0
    name = f"{node_host.prefix}987654"
    try:
        with node_services.connect(gpu_node) as conn, pytest.raises(ssh.SshError) as exc:
            conn.agent("ensure-account", {"username": name, "uid": victim_uid, "expires_on": "2099-01-01"})
        assert exc.value.code == "uid_out_of_range", exc.value.message
        assert subprocess.run(["getent", "passwd", name], capture_output=True).returncode != 0
    finally:
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def intent(node_host, name: str, uid: int) -> None:
    """What ensure-account writes before groupadd: a run that dies after it left this."""
    record = Path(node_host.state_dir, "accounts", f"{name}.json")
    record.parent.mkdir(mode=0o700, exist_ok=True)
    record.write_text(json.dumps({"uid": uid, "state": "creating"}))


def test_an_account_half_created_when_the_node_went_away_is_finished_on_retry(gpu_node, node_host, tmp_path):
    """The agent died after `groupadd` (node rebooted, connection cut, the 110 s alarm): the
    retried ensure-account finishes the job."""
    app, key = user_with_key(tmp_path)
    user = app.principal_investigator
    uid = unix_uid_for(user)
    name = grant_services.account_username(user)
    intent(node_host, name, uid)
    subprocess.run(["groupadd", "-g", str(uid), "--", name], check=True)  # what the first run left
    grant = active(app, days=5)
    assert ProvisioningTask.objects.get(grant=grant, kind="ensure-account").state == T.SUCCEEDED
    assert ssh_as(gpu_node, name, key, "id -u")[1].strip() == str(uid)


def test_an_account_created_but_not_yet_recorded_is_finished_on_retry(gpu_node, node_host, tmp_path):
    """The agent died between `useradd` and writing its final marker."""
    app, key = user_with_key(tmp_path)
    user = app.principal_investigator
    uid = unix_uid_for(user)
    name = grant_services.account_username(user)
    intent(node_host, name, uid)
    subprocess.run(["groupadd", "-g", str(uid), "--", name], check=True)
    subprocess.run(["useradd", "-m", "-u", str(uid), "-g", str(uid), "--", name], check=True)
    grant = active(app, days=5)
    assert ProvisioningTask.objects.get(grant=grant, kind="ensure-account").state == T.SUCCEEDED
    assert ssh_as(gpu_node, name, key, "id -u")[1].strip() == str(uid)


def test_a_half_created_account_of_another_uid_is_not_adopted(gpu_node, node_host, tmp_path):
    """The intent names the uid: an account of that name made by hand with another uid is
    refused, never finished."""
    app, _key = user_with_key(tmp_path)
    user = app.principal_investigator
    uid = unix_uid_for(user)
    name = grant_services.account_username(user)
    intent(node_host, name, uid)
    subprocess.run(["useradd", "-M", "-u", str(uid + 5000), "--", name], check=True)
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=5)))
    task = ProvisioningTask.objects.get(grant=grant, kind="ensure-account")
    assert task.state == T.FAILED and "exists" in task.last_error, task.last_error


def test_the_provisioning_account_cannot_bend_sudo_around_the_agent(gpu_node, node_host):
    """Environment, options and extra arguments that would change what runs as root."""
    agent = node_host.agent_path
    for command in (
        f"sudo -n -E {agent} version",
        f"sudo -n PYTHONINSPECT=1 {agent} version",
        f"sudo -n PYTHONPATH=/tmp {agent} version",
        f"sudo -n LD_PRELOAD=/tmp/x.so {agent} version",
        f"sudo -n -D /tmp {agent} version",
        f"sudo -n -R /tmp {agent} version",
        f"sudo -n -C 10 {agent} version",
        f"sudo -n -u nobody {agent} version",
        f"sudo -n -s {agent} version",
        f"sudo -n -i {agent} version",
        f"sudo -n -e {agent}",
        f"sudo -n {agent} version --help",
        f"sudo -n /usr/bin/python3 {agent} version",
    ):
        status, output = as_provisioning(gpu_node, command)
        assert status != 0 and '"ok": true' not in output, f"{command}: {output}"
