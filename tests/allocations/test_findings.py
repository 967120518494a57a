"""Findings from the samples: idle grants (notice on the grant page, e-mail to members),
processes on GPUs not lent to their user and silent nodes (notices and e-mail to operators),
the weekly idle list."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.test import Client

from allocations.models import Node, NodeAccount, Notice
from allocations.services.findings import idle_grants_scan, idle_report_send, misuse_scan, silent_nodes_scan
from allocations.services.usage import usage_hour_build
from portal.mail import mailing_send
from portal.models import Mailing, Membership, OutboxMessage
from tests.allocations.metering_helpers import batch, metered_grant, node_with_gpus, post, samples_every_minute
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def mails() -> list[dict]:
    return [m.args[0] for m in OutboxMessage.objects.filter(func="portal.jobs.send_email_job").order_by("pk")]


def idle_mails_sent() -> list:
    """Send the queued idle e-mails now, as their job does (recipients decided at that moment)."""
    for pk in Mailing.objects.filter(template="grant_idle", status=Mailing.Status.QUEUED).values_list("pk", flat=True):
        mailing_send(mailing_id=pk)
    return [m for m in mail.outbox if "/grants/" in m.body]


def this_hour():
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def run_hours(node, token, gpus, hours: list[datetime], utilization: int) -> None:
    client = Client()
    for hour in hours:
        body = samples_every_minute(gpus, hour.timestamp(), 60, utilization=utilization)
        assert post(client, node.hostname, token, body).status_code == 201
        usage_hour_build(hour=hour)


def test_a_grant_idle_for_n_hours_gets_a_notice_and_its_members_an_email(settings):
    settings.METERING_IDLE_HOURS = 3
    settings.METERING_IDLE_UTILIZATION = 5
    node, token, gpus = node_with_gpus()
    now = this_hour()
    grant = metered_grant(gpus[:2], opened_at=now - timedelta(hours=10))
    run_hours(node, token, gpus[:2], [now - timedelta(hours=h) for h in (3, 2, 1)], utilization=2)
    assert [n.grant_id for n in idle_grants_scan()] == [grant.pk]
    assert idle_grants_scan() == []  # once
    idle_mails = [m for m in idle_mails_sent() if f"/grants/{grant.pk}/" in m.body]
    assert [m.to for m in idle_mails] == [[grant.application.principal_investigator.email]]
    assert "5%" in idle_mails[0].body and f"#{grant.pk}" in idle_mails[0].subject
    client = Client()
    client.force_login(grant.application.principal_investigator)
    page = client.get(f"/grants/{grant.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "below 5% utilisation for 3 hours" in page


def test_members_removed_or_deactivated_after_the_idle_finding_are_not_told_when_it_is_sent(settings):
    settings.METERING_IDLE_HOURS = 3
    settings.METERING_IDLE_UTILIZATION = 5
    node, token, gpus = node_with_gpus()
    now = this_hour()
    grant = metered_grant(gpus[:1], opened_at=now - timedelta(hours=10))
    staying, leaving = UserFactory(email="staying@team.kr"), UserFactory(email="leaving@team.kr")
    for user in (staying, leaving):
        MembershipFactory(organisation=grant.organisation, user=user)
        grant.application.team.add(user)
    run_hours(node, token, gpus[:1], [now - timedelta(hours=h) for h in (3, 2, 1)], utilization=2)
    assert [n.grant_id for n in idle_grants_scan()] == [grant.pk]
    Membership.objects.filter(organisation=grant.organisation, user=leaving).delete()
    pi = grant.application.principal_investigator
    pi.is_active = False
    pi.save(update_fields=["is_active"])
    assert [m.to for m in idle_mails_sent()] == [["staying@team.kr"]]
    assert Mailing.objects.get(template="grant_idle").recipients == ["staying@team.kr"]


def test_a_grant_busy_in_one_of_the_hours_is_not_idle_and_working_again_resolves_the_notice(settings):
    settings.METERING_IDLE_HOURS = 2
    node, token, gpus = node_with_gpus()
    base = this_hour() - timedelta(hours=6)
    grant = metered_grant(gpus[:1], opened_at=base - timedelta(hours=10))
    for offset, utilization in ((0, 1), (1, 90), (2, 1)):
        run_hours(node, token, gpus[:1], [base + timedelta(hours=offset)], utilization=utilization)
    assert idle_grants_scan(now=base + timedelta(hours=3)) == []  # busy in the second-last hour
    run_hours(node, token, gpus[:1], [base + timedelta(hours=3)], utilization=0)
    assert len(idle_grants_scan(now=base + timedelta(hours=4))) == 1
    run_hours(node, token, gpus[:1], [base + timedelta(hours=4)], utilization=70)
    idle_grants_scan(now=base + timedelta(hours=5))
    assert grant.notices.get().resolved_at is not None


def test_a_process_of_a_user_on_a_gpu_not_lent_to_them_is_reported_to_operators():
    node, token, gpus = node_with_gpus()
    started = datetime.now(UTC) - timedelta(minutes=1)
    grant = metered_grant(gpus[:2], opened_at=datetime.now(UTC) - timedelta(hours=1))
    pi = grant.application.principal_investigator
    NodeAccount.objects.create(user=pi, node=node, username="gp1001", state="present")
    body = batch(gpus[:1], processes=[{"pid": 4242, "user": "gp1001", "memory_mib": 100}])
    body["samples"][0]["gpus"].append(
        batch(gpus[1:3], processes=[{"pid": 777, "user": "gp2002", "memory_mib": 100}])["samples"][0]["gpus"][0]
    )
    body["samples"][0]["gpus"].append(
        batch(gpus[2:3], processes=[{"pid": 778, "user": "gp1001", "memory_mib": 100}])["samples"][0]["gpus"][0]
    )
    assert post(Client(), node.hostname, token, body).status_code == 201
    found = misuse_scan(since=started)
    assert sorted((n.gpu.index, n.details["user"], n.details["pid"]) for n in found) == [
        (1, "gp2002", 777),
        (2, "gp1001", 778),
    ]
    assert misuse_scan(since=started) == []  # once
    operator_mails = [m for m in mails() if m["to"] == ["operators@localhost"]]
    assert len(operator_mails) == 2
    assert any(
        f"node: {node.hostname}" in m["body"] and "user: gp2002" in m["body"] and "pid 777" in m["body"]
        for m in operator_mails
    )
    assert Notice.objects.filter(kind=Notice.Kind.MISUSE, node=node).count() == 2


def test_a_node_that_stopped_reporting_is_reported_once_and_resolved_when_it_is_back(settings):
    settings.METERING_SILENT_NODE_MINUTES = 15
    node, token, gpus = node_with_gpus()
    Node.objects.filter(pk=node.pk).update(status=Node.Status.ONLINE)
    assert post(Client(), node.hostname, token, batch(gpus, at=time.time() - 3600)).status_code == 201
    assert [n.node_id for n in silent_nodes_scan()] == [node.pk]
    assert silent_nodes_scan() == []
    assert any(node.hostname in m["subject"] for m in mails())
    assert post(Client(), node.hostname, token, batch(gpus)).status_code == 201
    silent_nodes_scan()
    assert Notice.objects.get(kind=Notice.Kind.SILENT_NODE).resolved_at is not None


def test_the_weekly_list_names_grants_idle_most_of_their_time(settings):
    settings.METERING_IDLE_REPORT_PERCENT = 50
    settings.IDLE_REPORT_EMAILS = ["ministry@example.go.kr"]
    node, token, gpus = node_with_gpus()
    now = this_hour()
    idle = metered_grant(gpus[:1], opened_at=now - timedelta(hours=10))
    busy = metered_grant(gpus[1:2], opened_at=now - timedelta(hours=10))
    hours = [now - timedelta(hours=h) for h in (3, 2, 1)]
    run_hours(node, token, gpus[:1], hours, utilization=0)
    run_hours(node, token, gpus[1:2], hours, utilization=60)
    report = idle_report_send()
    assert [r["grant_id"] for r in report] == [idle.pk]
    assert busy.pk not in [r["grant_id"] for r in report]
    recipients = [m["to"] for m in mails()]
    assert ["ministry@example.go.kr"] in recipients and ["operators@localhost"] in recipients
