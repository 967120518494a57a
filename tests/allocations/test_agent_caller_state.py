"""What the provisioning account hands the agent through sudo besides its limits (its umask,
nice value and CPU affinity) must not shape a user's JupyterLab or the node's folders; what a
user does in their own ~/.ssh must not stop their grants (or their teammates') from becoming
active; a server whose state could not be recorded is not left running. Found by attacking the
agent on the real sshd stand-in (docs/nodes.md, "What a user on the node can and cannot do")."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest

from allocations.agent.gpu_portal_agent import jupyter as agent_jupyter
from allocations.agent.gpu_portal_agent.common import DEFAULT_CONFIG
from allocations.models import JupyterSession, NodeAccount
from allocations.services import nodes as node_services
from tests.allocations.helpers import active_grant, agent_answer, as_provisioning, live_processes, ssh_as, user_with_key


@pytest.fixture
def researcher(gpu_node, tmp_path):
    """An active grant with a JupyterLab session: (grant, unix name, private key)."""
    app, key = user_with_key(tmp_path)
    grant = active_grant(app)
    return grant, NodeAccount.objects.get(user=app.principal_investigator).username, key


def start_as(node, node_host, grant, username: str, prefix: str, token: str = "c" * 40) -> tuple[int, str]:
    """start-jupyter as the provisioning account, its command line starting with `prefix`."""
    session = Path(JupyterSession.objects.get(grant=grant).socket_path).stem
    payload = {"username": username, "session": session, "token": token, "gpus": []}
    return as_provisioning(node, f"{prefix} sudo -n {node_host.agent_path} start-jupyter", payload)


def cpus_allowed(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in status if line.startswith("Cpus_allowed_list"))


def test_a_narrow_umask_of_the_caller_does_not_break_a_users_jupyter_for_good(researcher, gpu_node, node_host):
    """Under `umask 0277` Jupyter made ~/.jupyter 0500 and every later start failed."""
    grant, username, _key = researcher
    shutil.rmtree(Path(f"/home/{username}/.jupyter"), ignore_errors=True)  # never migrated yet
    status, output = start_as(gpu_node, node_host, grant, username, "umask 0277;")
    assert status == 0, output
    status, output = start_as(gpu_node, node_host, grant, username, "", token="d" * 40)
    assert status == 0, output


def test_a_narrow_umask_of_the_caller_does_not_close_the_jupyter_folder_to_every_user(researcher, gpu_node, node_host):
    """/run is a tmpfs: after a reboot the agent makes jupyter_run_dir again, once made 0700
    under the caller's umask, and no user's server could listen there."""
    grant, username, _key = researcher
    base = Path(node_host.jupyter_run_dir)
    saved = base.with_name(base.name + ".saved")
    base.rename(saved)
    try:
        status, output = start_as(gpu_node, node_host, grant, username, "umask 0077;")
        assert oct(base.stat().st_mode & 0o777) == "0o755"
        assert status == 0, output
    finally:
        shutil.rmtree(base, ignore_errors=True)
        saved.rename(base)


def test_the_callers_nice_value_and_cpu_affinity_do_not_reach_a_users_jupyter(researcher, gpu_node, node_host):
    grant, username, _key = researcher
    status, output = start_as(gpu_node, node_host, grant, username, "nice -n 19 taskset -c 0")
    assert status == 0, output
    pid = agent_answer(output)["pid"]
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    assert (nice, cpus_allowed(pid)) == (0, cpus_allowed(1))


def test_a_folder_a_user_puts_where_the_environment_file_goes_does_not_fail_set_gpus(researcher, gpu_node):
    """A member could keep every grant they belong to (their teammates' too) from becoming
    active: a directory at the agent's temporary name, or at ~/.ssh/environment itself, made
    set-gpus fail for good. Only the user's own convenience is lost now."""
    _grant, username, key = researcher
    for blocker in ("~/.ssh/.environment.gpu-portal.tmp/x", "~/.ssh/environment/x"):
        status, out = ssh_as(gpu_node, username, key, f"rm -rf ~/.ssh/environment; mkdir -p {blocker} && echo ok")
        assert status == 0, out
        with node_services.connect(gpu_node) as conn:
            answer = conn.agent("set-gpus", {"username": username, "gpus": []})
        assert answer["ok"] is True
        written = answer["environment"] == "written"
        assert written == (blocker.startswith("~/.ssh/.")), answer  # a new temporary name each time
    ssh_as(gpu_node, username, key, "rm -rf ~/.ssh/environment ~/.ssh/.environment.gpu-portal.tmp")


def test_a_server_whose_state_cannot_be_recorded_is_not_left_running(researcher, gpu_node, node_host, monkeypatch):
    """A full disk after the server started: no state file would record it, so no stop could
    find it, and disk_full is retried (a new server each time). It is stopped before the error."""
    grant, username, _key = researcher
    config = {**DEFAULT_CONFIG, **json.loads(Path(node_host.config_path).read_text())}
    session = Path(JupyterSession.objects.get(grant=grant).socket_path).stem

    def disk_full(path, obj, **dump):
        raise OSError(errno.ENOSPC, "No space left on device")

    before = {line.split()[1] for line in live_processes(username) if "jupyter" in line}
    monkeypatch.setattr(agent_jupyter, "replace_json", disk_full)
    monkeypatch.setattr(agent_jupyter, "limited_resources", list)
    with pytest.raises(OSError):
        agent_jupyter.verb_start_jupyter(
            {"username": username, "session": session, "token": "e" * 40, "gpus": [], "wait_seconds": 5}, config
        )
    started = [line for line in live_processes(username) if "jupyter" in line and line.split()[1] not in before]
    assert started == []
