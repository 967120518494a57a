"""A member removed from the organisation loses their login on its grants' nodes (real sshd)."""

import os
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import JupyterSession, NodeAccount, ProvisioningTask
from allocations.services.keys import sshkey_add
from allocations.services.members import grant_member_added
from allocations.services.unix_ids import unix_uid_for
from portal.models import Membership
from portal.services import application_change_pi, membership_remove
from tests.allocations.helpers import (
    active_grant,
    add_key,
    approved_grant,
    device_acl_uids,
    probe_loop,
    probe_result,
    provision,
    ssh_as,
)
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory

T = ProvisioningTask.State


def test_a_removed_team_member_can_no_longer_log_in_while_the_pi_still_can(gpu_node, tmp_path):
    keys = {}
    for name in ("pi", "mate"):
        keys[name] = tmp_path / f"{name}_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[name])], check=True)
    app = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    mate = MembershipFactory(organisation=app.organisation).user
    app.team.add(mate)
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    sshkey_add(user=app.principal_investigator, text=keys["pi"].with_suffix(".pub").read_text())
    sshkey_add(user=mate, text=keys["mate"].with_suffix(".pub").read_text())
    today = timezone.localdate()
    grant = provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    mate_account = NodeAccount.objects.get(user=mate)
    pi_account = NodeAccount.objects.get(user=app.principal_investigator)
    assert ssh_as(gpu_node, mate_account.username, keys["mate"], "id -un")[1].strip() == mate_account.username

    membership_remove(membership=Membership.objects.get(user=mate), actor=owner)
    assert grant.tasks.filter(kind=ProvisioningTask.Kind.REVOKE, account=mate_account).exists()
    node_tasks_job(gpu_node.pk)

    mate_account.refresh_from_db()
    assert mate_account.state == NodeAccount.State.REVOKED
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, mate_account.username, keys["mate"], "true")
    assert ssh_as(gpu_node, pi_account.username, keys["pi"], "id -un")[0] == 0


def test_a_member_who_becomes_pi_of_a_running_grant_can_log_in_and_the_old_pi_then_leaves(gpu_node, tmp_path):
    keys = {}
    for name in ("pi", "heir"):
        keys[name] = tmp_path / f"{name}_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys[name])], check=True)
    app = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    old_pi = app.principal_investigator
    heir = MembershipFactory(organisation=app.organisation).user
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    sshkey_add(user=old_pi, text=keys["pi"].with_suffix(".pub").read_text())
    sshkey_add(user=heir, text=keys["heir"].with_suffix(".pub").read_text())
    today = timezone.localdate()
    provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    assert not NodeAccount.objects.filter(user=heir).exists()

    application_change_pi(application=app, new_pi=heir, actor=owner)
    node_tasks_job(gpu_node.pk)
    heir_account = NodeAccount.objects.get(user=heir)
    assert ssh_as(gpu_node, heir_account.username, keys["heir"], "id -un")[1].strip() == heir_account.username
    # The old PI is still a member of the organisation but no longer on the grant: like a removed
    # member, their login on its node ends with the hand-over (attack review of issue 8).
    old_account = NodeAccount.objects.get(user=old_pi)
    kinds = set(ProvisioningTask.objects.filter(account=old_account).values_list("kind", flat=True))
    assert ProvisioningTask.Kind.REVOKE in kinds
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, old_account.username, keys["pi"], "true")

    membership_remove(membership=Membership.objects.get(user=old_pi), actor=old_pi)
    node_tasks_job(gpu_node.pk)
    with pytest.raises(paramiko.AuthenticationException):
        ssh_as(gpu_node, old_account.username, keys["pi"], "true")
    assert ssh_as(gpu_node, heir_account.username, keys["heir"], "true")[0] == 0


# -- issue 7: a removed member keeps nothing of the grant's GPUs -----------------------------


def mate_on_two_teams(node_host, tmp_path):
    """A mate on team A (org X) and on team B (org Y), both grants active on the test node."""
    app_a = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=2000)
    mate = MembershipFactory(organisation=app_a.organisation).user
    app_a.team.add(mate)
    owner = MembershipFactory(organisation=app_a.organisation, role=Membership.Role.OWNER).user
    add_key(tmp_path, app_a.principal_investigator, "pi")
    mate_key = add_key(tmp_path, mate, "mate")
    grant_a = active_grant(app_a)
    app_b = ApplicationFactory(call=CallFactory(), gpu_count=4, gpu_hours=1000)
    MembershipFactory(organisation=app_b.organisation, user=mate)
    app_b.team.add(mate)
    grant_b = active_grant(app_b)
    mate_account = NodeAccount.objects.get(user=mate)
    dev_a = node_host.device(grant_a.assignments.first().gpu.index)
    return app_a, grant_b, mate, mate_account, mate_key, owner, dev_a


def remove_from_org_a(gpu_node, app_a, mate, owner, mate_account):
    membership_remove(membership=Membership.objects.get(user=mate, organisation=app_a.organisation), actor=owner)
    node_tasks_job(gpu_node.pk)
    assert not ProvisioningTask.objects.filter(node=gpu_node, state=T.FAILED).exists()
    assert NodeAccount.objects.get(pk=mate_account.pk).state == NodeAccount.State.ACTIVE  # grant B keeps it


def test_a_removed_member_cannot_open_the_grants_gpus_from_a_process_started_before(gpu_node, node_host, tmp_path):
    """The mate is on team A (org X) and on team B (org Y) on the same node, so removal from
    org X keeps their account. A process started before the removal (tmux, nohup, their Jupyter
    of grant B) must not keep grant A's GPU: with a grant group it kept the group for good."""
    app_a, grant_b, mate, mate_account, mate_key, owner, dev_a = mate_on_two_teams(node_host, tmp_path)
    name = mate_account.username
    out = f"/home/{name}/probe"
    ssh_as(gpu_node, name, mate_key, probe_loop(dev_a, out))
    time.sleep(1)
    assert probe_result(out) == "open"  # a member: fine
    assert unix_uid_for(mate) in device_acl_uids(dev_a)

    remove_from_org_a(gpu_node, app_a, mate, owner, mate_account)
    assert ssh_as(gpu_node, name, mate_key, f"(: < {dev_a}) 2>/dev/null && echo open || echo refused")[1].strip() == (
        "refused"
    )
    time.sleep(1.5)
    still = probe_result(out)
    st = os.stat(dev_a)
    assert still != "open", f"the removed member's old process still opens {dev_a}"
    assert unix_uid_for(mate) not in device_acl_uids(dev_a)
    assert (st.st_uid, st.st_gid) == (0, 0)  # no group ever grants a GPU
    # Their grant-B Jupyter is untouched (it holds no grant-A GPU).
    session = JupyterSession.objects.get(grant=grant_b, account=mate_account)
    assert session.state == JupyterSession.State.RUNNING


def test_a_removed_member_cannot_open_the_grants_gpus_through_a_setgid_program_planted_before(
    gpu_node, node_host, tmp_path
):
    """While on team A the mate copies python3 to a world-reachable place, setgid to each group
    they have. After removal (account kept for grant B) a fresh login runs the copies: none
    opens grant A's GPU, since the device file lets in uids, never a group."""
    app_a, _grant_b, mate, mate_account, mate_key, owner, dev_a = mate_on_two_teams(node_host, tmp_path)
    name = mate_account.username
    planted = f"/var/tmp/{name}-py"
    try:
        ssh_as(
            gpu_node, name, mate_key,
            f"for g in $(id -G); do c={planted}-$g; cp /usr/bin/python3 $c && chgrp $g $c && chmod 2755 $c; done",
        )  # fmt: skip
        copies = sorted(str(p) for p in Path("/var/tmp").glob(f"{name}-py-*"))
        assert copies and all(os.stat(c).st_mode & 0o2000 for c in copies)
        remove_from_org_a(gpu_node, app_a, mate, owner, mate_account)
        for copy in copies:
            probe = (
                f'{copy} -c \'import os; os.open("{dev_a}", os.O_RDONLY); print("open")\' 2>/dev/null || echo refused'
            )
            _status, out = ssh_as(gpu_node, name, mate_key, probe)
            assert out.strip() == "refused", f"after removal, {copy} (setgid) opened {dev_a}"
    finally:
        for copy in Path("/var/tmp").glob(f"{name}-py-*"):
            copy.unlink(missing_ok=True)


def test_a_removed_member_loses_their_login_even_when_another_members_account_failed(gpu_node, tmp_path):
    """Teammate X's account could not be made (uid clash, waiting for an operator). Removing
    member M queues grant-gpus with X in the member list and then M's revoke: neither may be
    held back by X's failure."""
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
        with pytest.raises(paramiko.AuthenticationException):
            ssh_as(gpu_node, mate_name, mate_key, "true")
        assert states and all(state == T.SUCCEEDED for _kind, state, _error in states), states
    finally:
        subprocess.run(["userdel", "-f", squatter], capture_output=True)
