"""A member removed from the organisation loses their login on its grants' nodes (real sshd)."""

import subprocess

import paramiko
import pytest
from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import NodeAccount, ProvisioningTask
from allocations.services.keys import sshkey_add
from portal.models import Membership
from portal.services import application_change_pi, membership_remove
from tests.allocations.helpers import approved_grant, provision, ssh_as
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory


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
