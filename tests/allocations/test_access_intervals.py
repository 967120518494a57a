"""Access intervals, the billing basis: written by the lifecycle as access opens and closes on the
real sshd node, never reconstructed later."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from allocations.jobs import node_tasks_job
from allocations.models import AccessInterval, Grant
from allocations.services import grants as grant_services
from tests.allocations.helpers import provision
from tests.allocations.test_grant_lifecycle import end_yesterday, grant_for

SEOUL = ZoneInfo("Asia/Seoul")


def test_activate_suspend_resume_expire_gives_two_closed_intervals(gpu_node, tmp_path):
    grant, _key = grant_for(tmp_path, "metered", gpus=2)
    before = timezone.now()
    grant = provision(grant)
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    first = AccessInterval.objects.get(grant=grant)
    assert first.closed_at is None and first.gpu_count == 2 and first.opened_at >= before

    grant_services.grant_suspend(grant=grant, actor=None, reason="unpaid invoice")
    first.refresh_from_db()
    assert (first.close_reason, first.closed_at is not None) == (Grant.Status.SUSPENDED, True)

    grant_services.grant_resume(grant=grant, actor=None)
    assert AccessInterval.objects.filter(grant=grant, closed_at__isnull=True).count() == 0  # not yet usable
    node_tasks_job(gpu_node.pk)
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    second = AccessInterval.objects.get(grant=grant, closed_at__isnull=True)
    assert second.opened_at >= first.closed_at

    end_yesterday(grant)
    assert grant_services.grants_expire_due() == [grant.pk]
    intervals = list(AccessInterval.objects.filter(grant=grant).order_by("opened_at"))
    assert [i.close_reason for i in intervals] == [Grant.Status.SUSPENDED, Grant.Status.EXPIRED]
    assert all(i.closed_at for i in intervals)


def test_a_revoked_grant_closes_its_interval_once(gpu_node, tmp_path):
    grant, _key = grant_for(tmp_path, "revoked")
    grant = provision(grant)
    grant_services.grant_revoke(grant=grant, actor=None, reason="misuse")
    interval = AccessInterval.objects.get(grant=grant)
    assert interval.close_reason == Grant.Status.REVOKED
    closed_at = interval.closed_at
    node_tasks_job(gpu_node.pk)  # the revocation's tasks change nothing in the interval
    interval.refresh_from_db()
    assert interval.closed_at == closed_at


def test_gpu_minutes_count_only_the_part_inside_the_period():
    opened = datetime(2026, 10, 31, 23, 30, tzinfo=SEOUL)
    interval = AccessInterval(gpu_count=4, opened_at=opened, closed_at=opened + timedelta(hours=1, seconds=59))
    november = (datetime(2026, 11, 1, tzinfo=SEOUL), datetime(2026, 12, 1, tzinfo=SEOUL))
    assert interval.gpu_minutes(*november) == 4 * 30  # 00:00 to 00:30:59 Seoul time: 30 whole minutes
    assert interval.gpu_minutes(opened - timedelta(days=1), opened) == 0
    still_open = AccessInterval(gpu_count=2, opened_at=opened, closed_at=None)
    assert still_open.gpu_minutes(opened, opened + timedelta(minutes=90)) == 180
