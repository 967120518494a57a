"""Attack review of issue 8 (attack8): the old principal investigator after a hand-over."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from psycopg.types.range import Range

from allocations.models import Assignment, Gpu, Grant, Node, ProvisioningTask
from allocations.services.grants import ensure_account
from portal.models import Membership
from portal.services import application_change_pi
from tests.factories import ApplicationFactory, MembershipFactory

K = ProvisioningTask.Kind


def test_the_old_pi_of_a_running_grant_loses_node_access_when_the_role_is_passed_on(db, client):
    app = ApplicationFactory(status="approved")
    owner = MembershipFactory(organisation=app.organisation, role=Membership.Role.OWNER).user
    successor = MembershipFactory(organisation=app.organisation).user
    old_pi = app.principal_investigator
    node = Node.objects.create(hostname="gpu1", address="127.0.0.1", gpu_model="H100-80GB", status="online")
    gpu = Gpu.objects.create(node=node, index=0, uuid="GPU-1", model="H100-80GB", memory_mib=81920)
    grant = Grant.objects.create(
        organisation=app.organisation, application=app, gpu_model="H100-80GB", gpu_count=1, gpu_hours=10,
        copay_percent=0, starts_on=app.starts_on, ends_on=app.ends_on, status="active",
    )  # fmt: skip
    now = timezone.now()
    Assignment.objects.create(grant=grant, node=node, gpu=gpu, period=Range(now, now + timedelta(days=30)))
    account = ensure_account(old_pi, node, app.ends_on)

    application_change_pi(application=app, new_pi=successor, actor=owner)

    # The old PI is now neither PI nor in the team (but still a member of the organisation).
    grant = Grant.objects.get(pk=grant.pk)
    assert old_pi not in grant.members()
    client.force_login(old_pi)
    assert client.get(f"/grants/{grant.pk}/").status_code == 404
    # Expected: like a removed member, their access on the grant's node ends (REVOKE or at least
    # the Jupyter they started stopped). Actual: nothing is queued for their account.
    queued = set(ProvisioningTask.objects.filter(account=account).values_list("kind", flat=True))
    group = ProvisioningTask.objects.filter(grant=grant, kind=K.GRANT_GPUS).last()
    assert account.username not in group.payload["members"]  # the grant group drops them (good)
    assert queued & {K.REVOKE, K.SET_GPUS, K.STOP_JUPYTER}, queued
