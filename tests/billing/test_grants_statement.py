"""The month's costs of a few grants (the dashboard) are priced without the rest of their
organisation, and come out exactly as the organisation's statement prices them: with and
without prepaid hours, which the organisation's grants draw in id order."""

from __future__ import annotations

import pytest

from allocations.models import Grant
from billing.models import HourPack
from billing.services.statements import grants_statement, organisation_statement
from tests.billing.helpers import at, grant_for, rate_card, startup

pytestmark = pytest.mark.django_db

START, END = at(1), at(20, 12)


def lines(statement) -> list[tuple]:
    return [(x.grant_id, x.kind, x.gpu_minutes, x.krw_per_gpu_hour, x.percent) for x in statement.lines]


def shown(*grants: Grant) -> list[Grant]:
    return list(Grant.objects.filter(pk__in=[g.pk for g in grants]).prefetch_related("access_intervals"))


@pytest.fixture
def organisation():
    """A startup with three H100 grants that used GPUs this month, the first past its subsidy."""
    rate_card("startup", 3000)
    org, _owner = startup()
    first = grant_for(org, hours=10, gpus=2, intervals=[(at(2), at(3))])  # 48 h on 2 GPUs: 86 h over
    second = grant_for(org, hours=5, intervals=[(at(4), None)])
    third = grant_for(org, hours=1000, intervals=[(at(5), at(6))])
    return org, first, second, third


def test_a_grants_lines_are_those_of_the_organisations_statement(organisation):
    org, _first, second, _third = organisation
    whole = organisation_statement(organisation=org, start=START, end=END)
    mine = grants_statement(organisation=org, grants=shown(second), start=START, end=END)
    assert lines(mine) == [line for line in lines(whole) if line[0] == second.pk]
    assert any(line[1] == "billable" for line in lines(mine))  # the case is not trivial


def test_with_prepaid_hours_a_later_grant_gets_what_earlier_grants_left(organisation):
    org, _first, second, _third = organisation
    HourPack.objects.create(
        organisation=org, gpu_model="H100-80GB", gpu_hours=100, krw_per_gpu_hour=3000, supply_krw=1,
        vat_krw=0, total_krw=1, status=HourPack.Status.PAID, paid_at=at(1, month=10),
    )  # fmt: skip
    whole = organisation_statement(organisation=org, start=START, end=END)
    mine = grants_statement(organisation=org, grants=shown(second), start=START, end=END)
    assert lines(mine) == [line for line in lines(whole) if line[0] == second.pk]
    # The first grant drew 38 of the 100 prepaid hours (48 used, 10 subsidised): 62 are left.
    assert [line[2] for line in lines(mine) if line[1] == "prepaid"] == [62 * 60]


def test_grants_without_access_this_month_cost_no_query(organisation, django_assert_num_queries):
    org, *_ = organisation
    idle = grant_for(org, intervals=[(at(1, month=9), at(2, month=9))])
    grants = shown(idle)
    with django_assert_num_queries(0):
        assert grants_statement(organisation=org, grants=grants, start=START, end=END).lines == []
