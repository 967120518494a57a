"""Security review of issue 7 (the node agent's trust boundary), on the real sshd stand-in.

Each test asserts the behaviour the boundary promises. At the time of writing (attack7 branch)
every test here FAILS (the attack works) except the two marked "held" in the report:
test_the_provisioning_account_cannot_bend_sudo_around_the_agent and
test_revoke_ends_processes_hidden_in_a_user_and_pid_namespace. Not for main as is: pick the
ones whose fix lands."""

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
from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.node_install import installer_program
from allocations.services import grants as grant_services
from allocations.services import nodes as node_services
from allocations.services.jupyter import session_token
from allocations.services.keys import sshkey_add
from allocations.services.members import grant_member_added
from allocations.services.unix_ids import unix_uid_for
from portal.models import Membership
from portal.services import membership_remove
from tests.allocations.helpers import add_key, approved_grant, provision, ssh_as, user_with_key
from tests.allocations.jupyter_client import run_in_kernel, ssh_tunnel
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory

T = ProvisioningTask.State


def active(app, days: int = 30) -> Grant:
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=days)))
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    return grant


def probe_loop(device: str, out: str) -> str:
    """A background job of the user that keeps trying to open `device`, writing the outcome."""
    return (
        f"setsid nohup sh -c 'while true; do if (: < {device}) 2>/dev/null; then echo open > {out}; "
        f"else echo refused > {out}; fi; sleep 0.3; done' >/dev/null 2>&1 < /dev/null &"
    )


def mate_on_two_teams(node_host, tmp_path):
    """A mate on team A (org X) and on team B (org Y), both grants active on the test node."""
    app_a = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    mate_key = tmp_path / "mate_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(mate_key)], check=True)
    mate = MembershipFactory(organisation=app_a.organisation).user
    app_a.team.add(mate)
    owner = MembershipFactory(organisation=app_a.organisation, role=Membership.Role.OWNER).user
    add_key(tmp_path, app_a.principal_investigator, "pi")
    sshkey_add(user=mate, text=mate_key.with_suffix(".pub").read_text(), name="mate")
    grant_a = active(app_a)
    app_b = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=1000)
    MembershipFactory(organisation=app_b.organisation, user=mate)
    app_b.team.add(mate)
    grant_b = active(app_b)
    mate_account = NodeAccount.objects.get(user=mate)
    dev_a = node_host.device(grant_a.assignments.first().gpu.index)
    return app_a, grant_b, mate, mate_account, mate_key, owner, dev_a


def remove_from_org_a(gpu_node, app_a, mate, owner, mate_account):
    membership_remove(membership=Membership.objects.get(user=mate, organisation=app_a.organisation), actor=owner)
    node_tasks_job(gpu_node.pk)
    assert not ProvisioningTask.objects.filter(node=gpu_node, state=T.FAILED).exists()
    assert NodeAccount.objects.get(pk=mate_account.pk).state == NodeAccount.State.ACTIVE  # grant B keeps it


def test_a_member_removed_from_a_grant_cannot_open_its_gpus_from_a_process_started_before(
    gpu_node, node_host, tmp_path
):
    """The mate is on team A (org X) and on team B (org Y) on the same node, so removal from
    org X keeps their account. A process started before the removal (tmux, nohup, their Jupyter of
    grant B) keeps grant A's group as a supplementary group: the device files stay root:gA 0660."""
    app_a, grant_b, mate, mate_account, mate_key, owner, dev_a = mate_on_two_teams(node_host, tmp_path)
    name = mate_account.username
    out = f"/home/{name}/probe"
    ssh_as(gpu_node, name, mate_key, probe_loop(dev_a, out))
    time.sleep(1)
    assert Path(out).read_text().strip() == "open"  # a member: fine

    remove_from_org_a(gpu_node, app_a, mate, owner, mate_account)
    # A fresh login no longer has the group ...
    assert ssh_as(gpu_node, name, mate_key, f"(: < {dev_a}) 2>/dev/null && echo open || echo refused")[1].strip() == (
        "refused"
    )
    time.sleep(1.5)
    # ... but the mate's grant-B Jupyter (and any tmux/nohup) still carries grant A's gid:
    jupyter = JupyterSession.objects.get(grant=grant_b, account=mate_account)
    gid_a = os.stat(dev_a).st_gid
    pid = json.loads(Path(node_host.state_dir, f"jupyter-{name}.{Path(jupyter.socket_path).stem}.json").read_text())[
        "pid"
    ]
    jupyter_groups = Path(f"/proc/{pid}/status").read_text().split("Groups:")[1].split("\n")[0].split()
    still = Path(out).read_text().strip()
    assert still == "refused" and str(gid_a) not in jupyter_groups, (
        f"removed member's old process: {still}; their grant-B Jupyter groups {jupyter_groups} include gA={gid_a}"
    )


def test_releasing_a_grants_gpus_does_not_kill_the_nodes_own_services(researcher, gpu_node, node_host):
    """nvidia-persistenced (and exporters such as dcgm/nvidia_gpu_exporter) run as their own
    non-root user and hold every /dev/nvidiaN open. release-gpus SIGKILLs every non-root holder."""
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


@pytest.fixture
def researcher(gpu_node, tmp_path):
    app, key = user_with_key(tmp_path)
    grant = active(app)
    return grant, NodeAccount.objects.get(user=app.principal_investigator).username, key


HOLD_THROUGH_A_BIND_MOUNT = (
    "mkdir -p ~/x; setsid nohup unshare -Urm sh -c "
    "'mount --bind {devdir} ~/x && exec 3< ~/x/{devname} && echo $$ > {out} && exec sleep 600' "
    ">/dev/null 2>&1 < /dev/null &"
)


def test_a_process_holding_a_released_gpu_is_killed_whatever_path_it_opened_it_by(researcher, gpu_node, node_host):
    """A user with two grants on the node keeps the account when one ends; release-gpus must kill
    whatever still holds that grant's GPUs. It compares readlink(/proc/PID/fd/N) with the device's
    path: a device opened through a bind mount in the user's own (unprivileged) user+mount
    namespace reads as ~/x/nvidiaN and is never matched."""
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
    holds = Path(f"/proc/{pid}/fd/3").exists() and os.stat(f"/proc/{pid}/fd/3").st_rdev == os.stat(device).st_rdev
    try:
        assert not holds, f"pid {pid} of {username} still holds {device} of the ended grant ({task.result})"
    finally:
        subprocess.run(["kill", "-9", str(pid)], check=False)


def test_an_account_half_created_when_the_node_went_away_is_finished_on_retry(gpu_node, tmp_path):
    """The agent died after `groupadd` (node rebooted, connection cut, the 110 s alarm): every
    verb is meant to be idempotent, so the retried ensure-account should finish the job."""
    app, _key = user_with_key(tmp_path)
    user = app.principal_investigator
    uid = unix_uid_for(user)
    name = grant_services.account_username(user)
    subprocess.run(["groupadd", "-g", str(uid), "--", name], check=True)  # what the first run left
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=5)))
    task = ProvisioningTask.objects.get(grant=grant, kind="ensure-account")
    assert task.state == T.SUCCEEDED, task.last_error


def test_an_account_created_but_not_yet_recorded_is_finished_on_retry(gpu_node, node_host, tmp_path):
    """The agent died between `useradd` and writing its marker: the account is stranded for good."""
    app, _key = user_with_key(tmp_path)
    user = app.principal_investigator
    uid = unix_uid_for(user)
    name = grant_services.account_username(user)
    subprocess.run(["groupadd", "-g", str(uid), "--", name], check=True)
    subprocess.run(
        ["useradd", "-m", "-u", str(uid), "-g", str(uid), "-G", node_host.managed_group, "--", name], check=True
    )
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=5)))
    task = ProvisioningTask.objects.get(grant=grant, kind="ensure-account")
    assert task.state == T.SUCCEEDED, task.last_error


def test_the_provisioning_account_cannot_become_a_uid_outside_the_portals_range(gpu_node, node_host, tmp_path):
    """Whoever holds the provisioning key creates a managed account with any free uid >= 1000 (an
    orphaned owner on a shared filesystem, a portal user of another node, an LDAP uid while LDAP
    is down), installs their own key and logs in as that uid."""
    victim_uid = 4242
    assert subprocess.run(["getent", "passwd", str(victim_uid)], capture_output=True).returncode != 0
    secret = Path("/var/tmp") / f"{node_host.prefix}-secret"
    secret.write_text("victim's data\n")
    os.chown(secret, victim_uid, victim_uid)
    os.chmod(secret, 0o600)
    attacker = tmp_path / "attacker"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(attacker)], check=True)
    name = f"{node_host.prefix}987654"
    try:
        with node_services.connect(gpu_node) as conn:
            try:
                conn.agent("ensure-account", {"username": name, "uid": victim_uid, "expires_on": "2099-01-01"})
                conn.agent("set-keys", {"username": name, "keys": [attacker.with_suffix(".pub").read_text().strip()]})
            except ssh.SshError:
                return  # refused: the boundary held
        _status, out = ssh_as(gpu_node, name, attacker, f"cat {secret}")
        assert "victim's data" not in out, "the provisioning key became uid 4242 and read its file"
    finally:
        secret.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", "-f", name], capture_output=True)


def test_a_user_cannot_make_their_own_jupyter_start_fail_with_an_internal_error(researcher, gpu_node, node_host):
    """A directory where the agent expects the socket: start-jupyter dies with an unhandled
    exception (exit 3, error 'internal') instead of a clear refusal; every later task of the same
    grant in that run then fails ('an earlier task of this grant failed')."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    ssh_as(gpu_node, username, key, f"rm -f {session.socket_path}; mkdir -p {session.socket_path}/x")
    with node_services.connect(gpu_node) as conn:
        with pytest.raises(ssh.SshError) as exc:
            conn.agent(
                "start-jupyter",
                {"username": username, "session": Path(session.socket_path).stem, "token": "a" * 40, "gpus": []},
            )
    assert exc.value.code != "internal", exc.value.message


def test_a_user_cannot_grow_a_root_owned_file_without_limit_through_their_jupyter(researcher, gpu_node, node_host,
                                                                                  tmp_path):  # fmt: skip
    """The server's stdout/stderr is a root-owned log in the agent's state directory; kernels
    inherit it. Quotas do not apply to root's file: a user can fill /var from a notebook."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    log = Path(node_host.state_dir) / f"jupyter-{username}.{Path(session.socket_path).stem}.log"
    before = log.stat().st_size
    code = "import os\nfor _ in range(20):\n    os.write(2, b'x' * (1 << 20))\nprint('done')"
    with ssh_tunnel(gpu_node, username, key, session.socket_path, tmp_path) as port:
        assert "done" in run_in_kernel(port, session_token(session), code)
    grown = log.stat().st_size - before
    st = log.stat()
    assert grown < 1 << 20, f"{log} (uid {st.st_uid}, mode {oct(st.st_mode)}) grew by {grown} bytes from a notebook"


def test_a_user_cannot_store_files_in_the_jupyter_socket_folder(researcher, gpu_node, node_host):
    """<jupyter_run_dir>/<user> is the user's own 0700 folder on /run (tmpfs on a real node,
    shared by sshd, systemd and sudo): anything may be written there, without quota."""
    _grant, username, key = researcher
    folder = f"{node_host.jupyter_run_dir}/{username}"
    status, out = ssh_as(gpu_node, username, key, f"head -c 5000000 /dev/zero > {folder}/big && ls -l {folder}/big")
    assert status != 0, f"the user wrote 5 MB into {folder}: {out}"


def test_a_user_cannot_make_their_revocation_fail_with_a_directory_in_the_socket_folder(
    researcher, gpu_node, node_host
):
    """`rm $SOCK; mkdir $SOCK` in the user's own socket folder: stop_jupyter_state's unlink raises
    IsADirectoryError (an 'internal', permanent failure), so the stop-jupyter task fails, every
    later task of the grant in that run fails ('an earlier task of this grant failed'), the
    revoke verb itself dies before kill_all_processes, and release-gpus never runs."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    device = node_host.device(grant.assignments.first().gpu.index)
    out = f"/home/{username}/probe"
    ssh_as(gpu_node, username, key, probe_loop(device, out))
    ssh_as(gpu_node, username, key, f"rm -f {session.socket_path}; mkdir {session.socket_path}")
    time.sleep(1)
    assert Path(out).read_text().strip() == "open"

    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    grant_services.reconcile_node(node=gpu_node)  # the 5-minute repair gets its chance too
    node_tasks_job(gpu_node.pk)
    time.sleep(1)
    tasks = {t.kind: (t.state, t.last_error[:120]) for t in ProvisioningTask.objects.filter(grant=grant)}
    tasks.update(
        {f"reconcile {t.kind}": (t.state, t.last_error[:120]) for t in ProvisioningTask.objects.filter(grant=None)}
    )
    survivors = subprocess.run(["pgrep", "-u", username], capture_output=True, text=True).stdout.split()
    st = os.stat(device)
    assert not survivors and Path(out).read_text().strip() != "open", (
        f"after revoke: processes {survivors}, probe says {Path(out).read_text().strip()}, "
        f"device gid {st.st_gid} mode {oct(st.st_mode & 0o777)}; tasks {tasks}"
    )


@pytest.mark.parametrize(
    "trick", ["mkdir -p ~/.ssh/authorized_keys/x", "rm -f ~/.ssh/environment; mkdir ~/.ssh/environment"]
)
def test_a_user_cannot_make_their_revocation_fail_with_a_directory_in_their_ssh_folder(
    researcher, gpu_node, node_host, trick
):
    """remove_user_file only tolerates FileNotFoundError: a directory named authorized_keys or
    environment makes `revoke` die (IsADirectoryError) before `usermod -L` and the kill loop."""
    grant, username, key = researcher
    ssh_as(gpu_node, username, key, trick)
    ssh_as(gpu_node, username, key, "setsid nohup sleep 600 >/dev/null 2>&1 < /dev/null &")
    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    grant_services.reconcile_node(node=gpu_node)
    node_tasks_job(gpu_node.pk)
    tasks = {t.kind: (t.state, t.last_error[:100]) for t in ProvisioningTask.objects.filter(grant=grant)}
    survivors = subprocess.run(["pgrep", "-u", username], capture_output=True, text=True).stdout.split()
    shadow = subprocess.run(["getent", "shadow", username], capture_output=True, text=True).stdout.strip()
    assert not survivors, f"after revoke: processes {survivors}; shadow {shadow.split(':')[1:2]}; tasks {tasks}"


def test_upgrading_the_agent_does_not_make_concurrent_verbs_fail_for_good(gpu_node, node_host):
    """install_agent replaces the agent file before it replaces the sudo rule pinned to the old
    digest: a verb run in between is refused by sudo ('a password is required'), which the portal
    treats as agent_missing: permanent, every open task of the node failed, node taken offline."""
    import threading

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
    assert not errors, f"{len(errors)} of {calls[0]} concurrent calls refused: {sorted(set(errors))}"


def test_installing_with_an_existing_operator_account_as_provisioning_user_is_refused(gpu_node, node_host, tmp_path):
    """Operator mistake: `--provisioning-user` names an existing local account (an admin with a
    password and their own key). The installer silently wipes its password, replaces its
    authorized_keys with the portal's key and gives it the agent's sudo rule."""
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
        refused = False
        with ssh.Connection(target, node_host.operator_key) as conn:
            try:
                conn.run_python_as_root(program, use_sudo=False, what="install")
            except ssh.SshError:
                refused = True
        shadow = subprocess.run(["getent", "shadow", admin], capture_output=True, text=True).stdout.split(":")[1]
        keys = Path(f"/home/{admin}/.ssh/authorized_keys").read_text()
        assert refused and shadow == "$6$salt$hash" and own.with_suffix(".pub").read_text() in keys, (
            f"installer accepted {admin}: password field now {shadow!r}, authorized_keys now {keys!r}"
        )
    finally:
        Path(f"/etc/sudoers.d/gpu-portal-{admin}").unlink(missing_ok=True)


def test_a_removed_member_cannot_open_the_grants_gpus_through_a_setgid_program_planted_before(
    gpu_node, node_host, tmp_path
):
    """While on team A the mate copies python3 to a world-reachable place, chgrp gA, chmod 2755.
    After removal (account kept for grant B) a fresh login runs it with egid gA and opens grant
    A's GPU; so can any other local user the mate hands it to."""
    app_a, _grant_b, mate, mate_account, mate_key, owner, dev_a = mate_on_two_teams(node_host, tmp_path)
    name = mate_account.username
    gid_a = os.stat(dev_a).st_gid
    planted = f"/var/tmp/{name}-py"
    try:
        ssh_as(
            gpu_node,
            name,
            mate_key,
            f"cp /usr/bin/python3 {planted} && chgrp {gid_a} {planted} && chmod 2755 {planted}",
        )
        remove_from_org_a(gpu_node, app_a, mate, owner, mate_account)
        probe = (
            f'{planted} -c \'import os; os.open("{dev_a}", os.O_RDONLY); print("open")\' 2>/dev/null || echo refused'
        )
        _status, out = ssh_as(gpu_node, name, mate_key, probe)
        assert out.strip() == "refused", f"after removal, {planted} (setgid {gid_a}) opened {dev_a}: {out.strip()}"
    finally:
        Path(planted).unlink(missing_ok=True)


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


def as_provisioning(node, command: str, payload: dict | None = None) -> tuple[int, str]:
    with node_services.connect(node) as conn:
        status, out, err = conn._exec(command, json.dumps(payload or {}).encode(), 30)
    return status, (out + err).decode()


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
    ps = subprocess.run(["ps", "-u", username, "-o", "stat=,pid=,comm="], capture_output=True, text=True).stdout
    assert [line for line in ps.splitlines() if not line.strip().startswith("Z")] == []


def test_a_removed_member_loses_their_login_even_when_another_members_account_failed(gpu_node, tmp_path):
    """Teammate X's account could not be made (uid clash, waiting for an operator). Removing
    member M queues grant-gpus with X in the member list (no_such_user, permanent); M's revoke
    comes later in the same grant and is failed unrun: 'an earlier task of this grant failed'."""
    app = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    mate, blocked = (MembershipFactory(organisation=app.organisation).user for _ in range(2))
    app.team.add(mate)
    add_key(tmp_path, app.principal_investigator, "pi")
    mate_key = add_key(tmp_path, mate, "mate")
    add_key(tmp_path, blocked, "blocked")
    squatter = f"sq{unix_uid_for(blocked)}"
    subprocess.run(["useradd", "-M", "-u", str(unix_uid_for(blocked)), squatter], check=True, capture_output=True)
    try:
        today = timezone.localdate()
        grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
        mate_name = NodeAccount.objects.get(user=mate).username
        assert ssh_as(gpu_node, mate_name, mate_key, "id -un")[0] == 0
        app.team.add(blocked)  # X joins the running grant; their account fails on the uid clash
        grant_member_added(grant=grant, user=blocked)
        node_tasks_job(gpu_node.pk)
        assert ProvisioningTask.objects.get(grant=grant, account__user=blocked, kind="ensure-account").state == T.FAILED

        membership_remove(membership=Membership.objects.get(user=mate), actor=owner)
        node_tasks_job(gpu_node.pk)
        late = ProvisioningTask.objects.filter(grant=grant, kind__in=["grant-gpus", "stop-jupyter", "revoke"])
        states = [(t.kind, t.state, t.last_error[:90]) for t in late.order_by("pk")]
        try:
            ssh_as(gpu_node, mate_name, mate_key, "true")
            still_in = True
        except paramiko.AuthenticationException:
            still_in = False
        grant_services.reconcile_node(node=gpu_node)  # what the 5-minute repair then does
        node_tasks_job(gpu_node.pk)
        try:
            ssh_as(gpu_node, mate_name, mate_key, "true")
            after_reconcile = "still logs in"
        except paramiko.AuthenticationException:
            after_reconcile = "locked out"
        assert not still_in, f"the removed member still logs in; tasks: {states}; after reconcile: {after_reconcile}"
    finally:
        subprocess.run(["userdel", "-f", squatter], capture_output=True)
