"""Jupyter on a real sshd node: each member's own JupyterLab under their own account, reached
only by them through `ssh -L` to a unix socket, with a token that is new on every start, shown
only to them and never stored. Each test replays an attack that worked on the port-based setup."""

import json
import os
import pwd
import re
import shlex
import stat
import time
from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.db import connection
from django.utils import timezone

from allocations import ssh
from allocations.jobs import node_tasks_job
from allocations.models import Grant, JupyterSession, NodeAccount, ProvisioningTask
from allocations.services import grants as grant_services
from allocations.services import jupyter as jupyter_services
from allocations.services import nodes as node_services
from allocations.services.jupyter import session_token
from tests.allocations.helpers import (
    active_grant,
    add_key,
    agent_answer,
    approved_grant,
    as_provisioning,
    can_lift_limits,
    device_acl_uids,
    live_processes,
    probe_loop,
    probe_result,
    provision,
    ssh_as,
    user_with_key,
)
from tests.allocations.jupyter_client import http_json, http_status, run_in_kernel, socket_status, ssh_tunnel
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, UserFactory

WHO_AND_GPUS = "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.environ['CUDA_VISIBLE_DEVICES'])"


def grant_for(app):
    today = timezone.localdate()
    return provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))


def session_of(grant, user) -> JupyterSession:
    return JupyterSession.objects.select_related("account").get(grant=grant, account__user=user)


def tcp_listeners(uid: int) -> list[str]:
    """Listening TCP sockets of a uid, from /proc/net/tcp{,6} (state 0A, uid column)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and int(cols[7]) == uid:
                found.append(cols[1])
    return found


@pytest.fixture
def victim_and_attacker(gpu_node, tmp_path):
    """Two researchers of different organisations with a grant each on the same node."""
    victim_app, victim_key = user_with_key(tmp_path, "victim")
    attacker_app, attacker_key = user_with_key(tmp_path, "attacker")
    victim, attacker = grant_for(victim_app), grant_for(attacker_app)
    assert victim.status == attacker.status == Grant.Status.ACTIVE
    return (victim, victim_key), (attacker, attacker_key)


def test_a_researcher_cannot_capture_another_researchers_jupyter_across_a_restart(
    victim_and_attacker, gpu_node, tmp_path
):
    (victim_grant, victim_key), (attacker_grant, attacker_key) = victim_and_attacker
    victim = victim_grant.application.principal_investigator
    session = session_of(victim_grant, victim)
    attacker_account = NodeAccount.objects.get(user=attacker_grant.application.principal_investigator)
    uid = os.stat(session.socket_path).st_uid
    # No port space shared with other users: the server listens on no TCP port at all, only on a
    # socket in a folder of the victim's own that nobody else may enter.
    assert tcp_listeners(uid) == []
    folder = os.lstat(Path(session.socket_path).parent)
    assert stat.S_ISDIR(folder.st_mode) and stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == uid
    attack = (
        "import socket, sys\n"
        "for act in ('bind', 'connect'):\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        getattr(s, act)(sys.argv[1]); print(act, 'ok')\n"
        "    except OSError as exc:\n"
        "        print(act, type(exc).__name__)\n"
    )
    command = f"python3 -c {shlex.quote(attack)} {shlex.quote(session.socket_path)}"

    old_token = session_token(session)
    jupyter_services.grant_restart_jupyter(grant=victim_grant, user=victim)
    # The attacker tries to hold the victim's address while the restart is queued, then after it.
    assert ssh_as(gpu_node, attacker_account.username, attacker_key, command)[1].split() == [
        "bind", "PermissionError", "connect", "PermissionError"
    ]  # fmt: skip
    node_tasks_job(gpu_node.pk)
    assert ssh_as(gpu_node, attacker_account.username, attacker_key, command)[1].split() == [
        "bind", "PermissionError", "connect", "PermissionError"
    ]  # fmt: skip

    session.refresh_from_db()
    assert session.state == JupyterSession.State.RUNNING
    new_token = session_token(session)
    assert new_token != old_token
    assert socket_status(session.socket_path, old_token) == 403  # a logged token dies with its server
    assert socket_status(session.socket_path, new_token) == 200
    with ssh_tunnel(gpu_node, attacker_account.username, attacker_key, session.socket_path, tmp_path) as port:
        assert http_status(port, new_token) == 0  # even with the token, the attacker's tunnel reaches nothing
    victim_account = NodeAccount.objects.get(user=victim)
    with ssh_tunnel(gpu_node, victim_account.username, victim_key, session.socket_path, tmp_path) as port:
        assert http_status(port, new_token) == 200


def test_each_team_member_works_in_their_own_jupyter_and_cannot_read_the_pis_files(gpu_node, tmp_path, client):
    app, pi_key = user_with_key(tmp_path, "pi")
    teammate = MembershipFactory(organisation=app.organisation).user
    teammate_key = add_key(tmp_path, teammate, "teammate")
    app.team.add(teammate)
    grant = grant_for(app)
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    pi = app.principal_investigator
    pi_session, mate_session = session_of(grant, pi), session_of(grant, teammate)
    pi_account, mate_account = pi_session.account, mate_session.account
    assert pi_session.socket_path != mate_session.socket_path
    assert ssh_as(gpu_node, pi_account.username, pi_key, "umask 077; echo pi-only > ~/private.txt")[0] == 0

    mate_token = session_token(mate_session)
    pi_file = f"{pwd.getpwnam(pi_account.username).pw_dir}/private.txt"
    read_pi_file = f"{WHO_AND_GPUS}\ntry:\n    open({pi_file!r}).read(); print('READ')\n"
    read_pi_file += "except OSError as exc:\n    print(type(exc).__name__)\n"
    with ssh_tunnel(gpu_node, mate_account.username, teammate_key, mate_session.socket_path, tmp_path) as port:
        name, visible, outcome = run_in_kernel(port, mate_token, read_pi_file).split()
    assert (name, outcome) == (mate_account.username, "PermissionError")
    assert visible.split(",") == grant.gpu_uuids()
    # The teammate's token does not open the PI's server, nor can their tunnel reach it.
    assert socket_status(pi_session.socket_path, mate_token) == 403
    with ssh_tunnel(gpu_node, mate_account.username, teammate_key, pi_session.socket_path, tmp_path) as port:
        assert http_status(port, session_token(pi_session)) == 0

    # The grant page shows each member only their own tunnel, URL and token.
    client.force_login(teammate)
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    assert f"ssh -N -L 8888:{mate_session.socket_path} -p {gpu_node.ssh_port} {mate_account.username}@" in body
    assert f"http://127.0.0.1:8888/lab?token={mate_token}" in body
    assert session_token(pi_session) not in body and pi_session.socket_path not in body
    client.force_login(pi)
    body = client.get(f"/grants/{grant.pk}/").content.decode()
    assert session_token(pi_session) in body and mate_token not in body

    # A teammate's restart renews only their own server.
    pi_socket = os.stat(pi_session.socket_path).st_ino
    client.force_login(teammate)
    assert client.post(f"/grants/{grant.pk}/jupyter/restart/").status_code == 302
    assert 'http-equiv="refresh"' in client.get(f"/grants/{grant.pk}/").content.decode()  # until it is back
    node_tasks_job(gpu_node.pk)
    assert 'http-equiv="refresh"' not in client.get(f"/grants/{grant.pk}/").content.decode()
    mate_session.refresh_from_db()
    pi_session.refresh_from_db()
    assert session_token(mate_session) != mate_token
    assert socket_status(mate_session.socket_path, session_token(mate_session)) == 200
    assert os.stat(pi_session.socket_path).st_ino == pi_socket
    assert socket_status(pi_session.socket_path, session_token(pi_session)) == 200

    # Suspending the grant stops every member's server.
    grant_services.grant_suspend(grant=grant, actor=None, reason="audit")
    node_tasks_job(gpu_node.pk)
    assert set(JupyterSession.objects.filter(grant=grant).values_list("state", flat=True)) == {"stopped"}
    assert socket_status(pi_session.socket_path, session_token(pi_session)) == 0
    assert socket_status(mate_session.socket_path, session_token(mate_session)) == 0

    # Resuming gives each member a fresh server again, with a token never used before.
    grant_services.grant_resume(grant=grant, actor=None)
    node_tasks_job(gpu_node.pk)
    for user, old in ((pi, pi_session), (teammate, mate_session)):
        resumed = JupyterSession.objects.exclude(state="stopped").get(grant=grant, account__user=user)
        assert resumed.state == JupyterSession.State.RUNNING and session_token(resumed) != session_token(old)
        assert socket_status(resumed.socket_path, session_token(resumed)) == 200


def test_two_grants_of_one_researcher_on_one_node_keep_their_own_jupyter(gpu_node, tmp_path):
    first_app, key = user_with_key(tmp_path, "twice")
    user = first_app.principal_investigator
    second_app = ApplicationFactory(
        call=CallFactory(), organisation=first_app.organisation, principal_investigator=user, gpu_count=4,
        gpu_hours=2000,
    )  # fmt: skip
    first, second = grant_for(first_app), grant_for(second_app)
    assert first.status == second.status == Grant.Status.ACTIVE, (first.status_reason, second.status_reason)
    assert first.assignments.first().node == second.assignments.first().node
    sessions = [session_of(first, user), session_of(second, user)]
    assert sessions[0].account == sessions[1].account
    assert sessions[0].socket_path != sessions[1].socket_path
    tokens = [session_token(s) for s in sessions]
    for session, token, other in zip(sessions, tokens, reversed(tokens), strict=True):
        assert socket_status(session.socket_path, token) == 200  # the second start left the first alone
        assert socket_status(session.socket_path, other) == 403
    username = sessions[0].account.username
    for grant, session, token in zip((first, second), sessions, tokens, strict=True):
        with ssh_tunnel(gpu_node, username, key, session.socket_path, tmp_path) as port:
            name, visible = run_in_kernel(port, token, WHO_AND_GPUS).split()
        assert (name, visible.split(",")) == (username, grant.gpu_uuids())  # that grant's GPUs
    assert set(first.gpu_uuids()).isdisjoint(second.gpu_uuids())

    grant_services.grant_revoke(grant=first, actor=None, reason="ended early")
    node_tasks_job(gpu_node.pk)
    assert socket_status(sessions[0].socket_path, tokens[0]) == 0
    assert socket_status(sessions[1].socket_path, tokens[1]) == 200  # the other grant's server runs on


def test_a_member_runs_python_in_jupyterlab_as_themselves_with_their_gpus(gpu_node, tmp_path, client):
    app, key = user_with_key(tmp_path, "labuser")
    grant = grant_for(app)
    user = app.principal_investigator
    session = session_of(grant, user)
    token = session_token(session)
    client.force_login(user)
    assert f'href="http://127.0.0.1:8888/lab?token={token}"' in client.get(f"/grants/{grant.pk}/").content.decode()
    with ssh_tunnel(gpu_node, session.account.username, key, session.socket_path, tmp_path) as port:
        assert http_status(port, token, "/lab") == 200
        assert http_status(port, None, "/api/kernelspecs") == 403
        assert "python3" in http_json(port, token, "GET", "/api/kernelspecs")["kernelspecs"]
        name, visible = run_in_kernel(port, token, WHO_AND_GPUS).split()
    assert name == session.account.username
    assert visible.split(",") == grant.gpu_uuids()
    assert len(grant.gpu_uuids()) == 4


def test_operators_cannot_read_jupyter_tokens_from_the_database_or_admin_lookups(gpu_node, tmp_path, client):
    app, _key = user_with_key(tmp_path, "secretive")
    grant = grant_for(app)
    session = session_of(grant, app.principal_investigator)
    token = session_token(session)
    assert socket_status(session.socket_path, token) == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        holding = []
        for table in tables:
            query = f"SELECT count(*) FROM {connection.ops.quote_name(table)} t WHERE t::text LIKE %s"  # noqa: S608
            cursor.execute(query, [f"%{token}%"])
            if cursor.fetchone()[0]:
                holding.append(table)
    assert len(tables) > 20 and holding == []
    assert ProvisioningTask.objects.filter(grant=grant, kind="start-jupyter").exists()

    operator = UserFactory(is_staff=True, is_superuser=True)
    TOTP.activate(operator, generate_totp_secret())
    client.force_login(operator)
    assert client.get("/admin/allocations/jupytersession/", {"state__exact": "running"}).status_code == 200
    for url, lookup in (
        ("/admin/allocations/jupytersession/", {"token_nonce__startswith": session.token_nonce[:1]}),
        ("/admin/allocations/jupytersession/", {"token_nonce": session.token_nonce}),
        ("/admin/allocations/provisioningtask/", {"payload__token__startswith": token[:1]}),
        ("/admin/allocations/provisioningtask/", {"payload___meta__nonce__startswith": session.token_nonce[:1]}),
        ("/admin/allocations/grant/", {"jupyter_sessions__token_nonce__startswith": session.token_nonce[:1]}),
        ("/admin/allocations/node/", {"tasks__payload__contains": "nonce"}),
    ):
        assert client.get(url, lookup).status_code == 400, (url, lookup)


# -- issue 7: nothing in the user's socket folder breaks a start or a revocation ------------


@pytest.fixture
def researcher(gpu_node, tmp_path):
    app, key = user_with_key(tmp_path)
    grant = active_grant(app)
    return grant, NodeAccount.objects.get(user=app.principal_investigator).username, key


def test_a_user_cannot_make_their_own_jupyter_start_fail_with_an_internal_error(researcher, gpu_node, node_host):
    """A directory where the agent expects the socket: a clear refusal, not an unhandled
    exception ('internal')."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    ssh_as(gpu_node, username, key, f"rm -f {session.socket_path}; mkdir -p {session.socket_path}/x")
    with node_services.connect(gpu_node) as conn:
        with pytest.raises(ssh.SshError) as exc:
            conn.agent(
                "start-jupyter",
                {"username": username, "session": Path(session.socket_path).stem, "token": "a" * 40, "gpus": []},
            )
    assert exc.value.code == "socket_path_taken", exc.value.message


def test_a_users_jupyter_output_goes_to_a_file_they_own_not_to_root(researcher, gpu_node, node_host, tmp_path):
    """The server's stdout/stderr (inherited by kernels) was a root-owned log in the agent's
    state folder, which no quota limits: a notebook could fill /var. It is now a file the user
    owns in their own socket folder (a small tmpfs of its own on a real node)."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    stem = Path(session.socket_path).stem
    assert not list(Path(node_host.state_dir).glob("*.log"))
    log = Path(session.socket_path).with_name(f"{stem}.log")
    assert log.stat().st_uid == pwd.getpwnam(username).pw_uid
    before = log.stat().st_size
    code = "import os\nfor _ in range(2):\n    os.write(2, b'x' * (1 << 20))\nprint('done')"
    with ssh_tunnel(gpu_node, username, key, session.socket_path, tmp_path) as port:
        assert "done" in run_in_kernel(port, session_token(session), code)
    assert log.stat().st_size - before >= 2 << 20  # the kernel's output landed in the user's file
    assert log.stat().st_uid == pwd.getpwnam(username).pw_uid
    assert not list(Path(node_host.state_dir).glob("*.log"))


def test_a_user_cannot_make_their_revocation_fail_with_a_directory_in_the_socket_folder(
    researcher, gpu_node, node_host
):
    """`rm $SOCK; mkdir $SOCK` in the user's own socket folder made stop-jupyter fail
    (IsADirectoryError, 'internal', permanent), every later task of the grant fail unrun and the
    revoke verb die before its kill: the user kept their processes and the GPU."""
    grant, username, key = researcher
    session = JupyterSession.objects.get(grant=grant)
    device = node_host.device(grant.assignments.first().gpu.index)
    out = f"/home/{username}/probe"
    ssh_as(gpu_node, username, key, probe_loop(device, out))
    ssh_as(gpu_node, username, key, f"rm -f {session.socket_path}; mkdir {session.socket_path}")
    time.sleep(1)
    assert probe_result(out) == "open"

    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    node_tasks_job(gpu_node.pk)
    time.sleep(1)
    tasks = {t.kind: (t.state, t.last_error[:120]) for t in ProvisioningTask.objects.filter(grant=grant)}
    assert all(state == ProvisioningTask.State.SUCCEEDED for state, _error in tasks.values()), tasks
    assert live_processes(username) == []
    assert device_acl_uids(device) == [] and os.stat(device).st_mode & 0o777 == 0o600


# -- the provisioning account's limits never reach a user's server --------------------------


def limits_of(pid: int) -> dict:
    """/proc/PID/limits as {"Max file size": ("unlimited", "unlimited"), ...}."""
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard, *_unit = re.split(r"\s{2,}", line.strip())
        rows[name] = (soft, hard)
    return rows


def start_as_provisioning(node, node_host, grant, username: str, limits: str) -> tuple[int, str]:
    """start-jupyter for the grant's session, run by the provisioning account under `limits`."""
    stem = Path(JupyterSession.objects.get(grant=grant).socket_path).stem
    payload = {"username": username, "session": stem, "token": "b" * 40, "gpus": []}
    return as_provisioning(node, f"prlimit {limits} sudo -n {node_host.agent_path} start-jupyter", payload)


UNLIMITED = ("unlimited", "unlimited")


def test_the_provisioning_account_cannot_hand_its_limits_to_a_users_jupyter(researcher, gpu_node, node_host):
    """sudo passes the caller's limits to the agent, and the agent passed them to the user's
    JupyterLab: `prlimit --cpu=3000 … sudo … start-jupyter` gave the user a server whose
    kernels died after 3000 CPU seconds (seen: a Jupyter with `Max file size 16 16`). Soft
    limits under unlimited hard ones: sudo 1.9 raises these itself, the agent lifts them
    wherever sudo does not (any root can); the server has none. Hard limits: the next test."""
    grant, username, _key = researcher
    status, output = start_as_provisioning(
        gpu_node, node_host, grant, username, "--fsize=16:unlimited --cpu=3000:unlimited --as=68719476736:unlimited"
    )
    assert status == 0, output
    limits = limits_of(agent_answer(output)["pid"])
    assert limits["Max file size"] == limits["Max cpu time"] == limits["Max address space"] == UNLIMITED, limits


def test_limits_the_agent_cannot_lift_are_refused_not_handed_to_a_users_jupyter(researcher, gpu_node, node_host):
    """Hard limits need CAP_SYS_RESOURCE to raise: a real node's root lifts them; where root
    cannot (this container) start-jupyter refuses (caller_limits, permanent) before it stops
    anything, and the user's running server stays as it was."""
    grant, username, _key = researcher
    session = JupyterSession.objects.get(grant=grant)
    state = Path(node_host.state_dir) / f"jupyter-{username}.{Path(session.socket_path).stem}.json"
    running = json.loads(state.read_text())["pid"]
    status, output = start_as_provisioning(gpu_node, node_host, grant, username, "--fsize=1000000 --cpu=3000")
    if can_lift_limits():
        assert status == 0, output
        limits = limits_of(agent_answer(output)["pid"])
        assert limits["Max file size"] == limits["Max cpu time"] == UNLIMITED, limits
    else:
        answer = agent_answer(output)
        assert status != 0 and answer["error"] == "caller_limits", output
        assert "fsize" in answer["message"] and "cpu" in answer["message"]
        assert json.loads(state.read_text())["pid"] == running
        assert limits_of(running)["Max file size"] == UNLIMITED  # still there, untouched
