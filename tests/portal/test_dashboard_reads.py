"""The dashboard's hand-written reads (portal/dashboard.py) show exactly what the access rules
show: the applications of `Application.objects.visible_to` and the grants of
`Grant.objects.of_member`, with the usage of `grants_with_usage`, for every user of generated
data, after members left their organisations."""

from __future__ import annotations

from datetime import date

import pytest
from django.db.models import F

from allocations.models import Grant
from allocations.services.usage import grants_with_usage
from benchmarks.generate import Generator
from portal.dashboard import APPLICATIONS_SHOWN, GRANTS_SHOWN, dashboard_read
from portal.models import Application, Membership, Organisation, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    Generator(0.002, seed=5, nodes=None, today=date.today()).run()
    # Principal investigators and team members who left their organisation for another one see
    # nothing of the first.
    leavers = [*Grant.objects.values_list("application__principal_investigator", flat=True)[:3]]
    leavers += Application.team.through.objects.values_list("user_id", flat=True)[:3]
    elsewhere = Organisation.objects.order_by("-pk").first()
    Membership.objects.filter(user__in=leavers).exclude(role="owner").delete()
    for user_id in leavers:
        Membership.objects.get_or_create(user_id=user_id, organisation=elsewhere, defaults={"role": "member"})


def test_every_user_sees_what_the_access_rules_show(world):
    users = list(User.objects.order_by("pk"))
    assert len(users) > 50
    seen_apps = seen_grants = 0
    for user in users:
        data = dashboard_read(user)
        expected_apps = Application.objects.visible_to(user).order_by("-submitted_at", "-created_at", "pk")
        assert [a.pk for a in data.applications] == [a.pk for a in expected_apps[:APPLICATIONS_SHOWN]], user
        expected = grants_with_usage(Grant.objects.of_member(user).order_by("-created_at", "-pk"), limit=GRANTS_SHOWN)
        assert [(r["grant"].pk, r["gpu_hours_used"], r["energy_kwh"], r["avg_utilization"]) for r in data.grants] == [
            (r["grant"].pk, r["gpu_hours_used"], r["energy_kwh"], r["avg_utilization"]) for r in expected
        ], user
        assert sorted(m.pk for m in data.memberships) == sorted(user.memberships.values_list("pk", flat=True))
        seen_apps += len(data.applications)
        seen_grants += len(data.grants)
    assert seen_apps and seen_grants  # the comparison is not between empty lists


def test_a_principal_investigator_who_left_sees_neither_application_nor_grant(world):
    grant = Grant.objects.filter(
        application__principal_investigator__memberships__organisation=F("organisation")
    ).first()
    pi = grant.application.principal_investigator
    assert grant.pk in [r["grant"].pk for r in dashboard_read(pi).grants]
    other = Organisation.objects.exclude(pk=grant.organisation_id).first()
    Membership.objects.get_or_create(user=pi, organisation=other, defaults={"role": "member"})
    Membership.objects.filter(user=pi, organisation=grant.organisation).delete()
    data = dashboard_read(pi)
    assert grant.pk not in [r["grant"].pk for r in data.grants]
    assert grant.application_id not in [a.pk for a in data.applications]


def test_fields_not_read_are_loaded_on_use_not_left_empty(world):
    application = next(a for u in User.objects.all() for a in dashboard_read(u).applications)
    stored = Application.objects.get(pk=application.pk)
    assert application.call.closes_at == stored.call.closes_at
    assert application.abstract == stored.abstract
