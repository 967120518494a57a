"""What unpaid invoices and spent subsidies do: suspension through the grant lifecycle, resumption
when paid, e-mails at 80 % and 100 % of the subsidy, and the call's side of what comes after."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from allocations.models import Grant
from billing.models import BillingAccount, HourPack, Invoice, SubsidyAlert
from billing.services.consequences import (
    OVERDUE_REASON,
    grant_subsidy_check,
    invoices_enforce_overdue,
)
from billing.services.invoices import invoice_issue, invoice_mark_paid
from portal.models import Organisation
from tests.billing.helpers import at, grant_for, hour_pack, rate_card, startup

G = Grant.Status


def overdue_invoice(days_late: int):
    rate_card("startup", 3000)
    org, _ = startup()
    paying = grant_for(org, intervals=[(at(2, 9), at(2, 19))], node=True)
    free = grant_for(org, copay=0, intervals=[(at(3, 9), at(3, 10))], node=True)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    Invoice.objects.filter(pk=invoice.pk).update(due_on=timezone.localdate() - timedelta(days=days_late))
    return invoice, paying, free


def test_an_invoice_overdue_past_the_grace_suspends_the_paying_grants_only(db, settings):
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    _invoice, paying, free = overdue_invoice(days_late=15)
    assert invoices_enforce_overdue() == [paying.pk]
    paying.refresh_from_db()
    free.refresh_from_db()
    assert (paying.status, paying.status_reason, free.status) == (G.SUSPENDED, OVERDUE_REASON, G.ACTIVE)
    assert paying.access_intervals.filter(closed_at__isnull=True).count() == 0  # access closed, billing stops
    assert invoices_enforce_overdue() == []  # a second run changes nothing


def test_an_invoice_just_overdue_suspends_nothing_yet(db, settings):
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    overdue_invoice(days_late=3)
    assert invoices_enforce_overdue() == []


def test_paying_the_invoice_gives_the_suspended_grants_their_access_back(db, settings, jobs):
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    invoice, paying, _free = overdue_invoice(days_late=20)
    invoices_enforce_overdue()
    with jobs.committed():
        invoice_mark_paid(invoice_id=invoice.pk, reason="bank transfer")
    paying.refresh_from_db()
    assert paying.status == G.PROVISIONING  # resumed: provisioning, active once the node tasks succeed
    assert paying.events.filter(new_status=G.PROVISIONING, reason="resumed").exists()


def test_a_grant_suspended_for_another_reason_is_not_resumed_by_a_payment(db, settings):
    from allocations.services.grants import grant_suspend

    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    invoice, paying, _free = overdue_invoice(days_late=1)
    grant_suspend(grant=paying, actor=None, reason="misuse")
    invoice_mark_paid(invoice_id=invoice.pk, reason="paid")
    paying.refresh_from_db()
    assert paying.status == G.SUSPENDED


def test_members_hear_at_80_and_100_percent_once_each(db, jobs):
    org, _ = startup()
    now = timezone.now()
    grant = grant_for(org, hours=10, intervals=[(now - timedelta(hours=8, minutes=30), None)])
    BillingAccount.objects.create(organisation=org, stripe_customer_id="cus_x", default_payment_method="pm_x")
    with jobs.committed():
        assert grant_subsidy_check(grant_id=grant.pk, now=now) == "85%"
        assert grant_subsidy_check(grant_id=grant.pk, now=now) == "85%"
    jobs.run()
    assert len(mail.outbox) == 2  # the PI (owner) and the billing member, once
    with jobs.committed():
        assert grant_subsidy_check(grant_id=grant.pk, now=now + timedelta(hours=2)) == "billed"
    jobs.run()
    assert len(mail.outbox) == 4
    assert sorted(SubsidyAlert.objects.values_list("percent", flat=True)) == [80, 100]


def test_an_academic_grant_is_suspended_when_its_subsidy_is_used_up(db):
    org, _ = startup(kind=Organisation.Kind.UNIVERSITY, business_registration_number=None)
    now = timezone.now()
    grant = grant_for(org, copay=0, hours=1, intervals=[(now - timedelta(hours=1), None)])
    assert grant_subsidy_check(grant_id=grant.pk, now=now) == "suspended"
    grant.refresh_from_db()
    assert grant.status == G.SUSPENDED


# (organisation kind, the call's rule, saved card?, hours past the 100 % notice) -> outcome.
POLICY_CASES = [
    ("startup", "suspend", True, 0, "suspended"),  # the call, not the kind, decides
    ("startup", "grace", False, 1, "grace"),
    ("startup", "grace", True, 1, "billed"),
    ("startup", "billable", False, 500, "billed"),
    ("university", "billable", False, 500, "billed"),
    ("university", "grace", False, 100, "suspended"),
    ("university", "suspend", False, 0, "suspended"),
]


@pytest.mark.parametrize(("kind", "policy", "card", "later", "outcome"), POLICY_CASES)
def test_past_100_percent_the_call_decides_what_happens(db, settings, kind, policy, card, later, outcome):
    settings.SUBSIDY_GRACE_HOURS = 72
    org, _ = startup(kind=kind, **({"business_registration_number": None} if kind == "university" else {}))
    now = timezone.now()
    grant = grant_for(org, hours=1, past_subsidy=policy, intervals=[(now - timedelta(hours=2), None)])
    if card:
        BillingAccount.objects.create(organisation=org, stripe_customer_id="cus_p", default_payment_method="pm_p")
    result = grant_subsidy_check(grant_id=grant.pk, now=now)  # the 100 % notice
    if later:
        result = grant_subsidy_check(grant_id=grant.pk, now=now + timedelta(hours=later))
    assert result == outcome
    grant.refresh_from_db()
    assert (grant.status == G.SUSPENDED) is (outcome == "suspended")


def test_buying_hours_does_not_bring_back_a_grant_whose_call_suspends_at_100_percent(db):
    from billing.services.consequences import grants_resume_after_funding

    org, _ = startup()
    now = timezone.now()
    grant = grant_for(org, hours=1, past_subsidy="suspend", intervals=[(now - timedelta(hours=2), None)], node=True)
    assert grant_subsidy_check(grant_id=grant.pk, now=now) == "suspended"
    BillingAccount.objects.create(organisation=org, stripe_customer_id="cus_s", default_payment_method="pm_s")
    assert grants_resume_after_funding(organisation_id=org.pk) == []


def test_a_startup_without_card_or_hours_is_suspended_after_the_grace_period(db, settings):
    settings.SUBSIDY_GRACE_HOURS = 72
    org, _ = startup()
    now = timezone.now()
    grant = grant_for(org, hours=1, intervals=[(now - timedelta(hours=2), None)])
    assert grant_subsidy_check(grant_id=grant.pk, now=now) == "grace"
    assert grant_subsidy_check(grant_id=grant.pk, now=now + timedelta(hours=71)) == "grace"
    assert grant_subsidy_check(grant_id=grant.pk, now=now + timedelta(hours=73)) == "suspended"


def test_a_startup_with_prepaid_hours_keeps_running_past_its_subsidy_until_they_are_drawn(db, settings):
    settings.SUBSIDY_GRACE_HOURS = 72
    org, owner = startup()
    # 1 h subsidy, running since 10 Nov 10:00, a 10 h pack bought the day before.
    grant = grant_for(org, hours=1, intervals=[(at(10, 10), None)])
    hour_pack(org, owner, status=HourPack.Status.PAID, paid_at=at(9, 10))
    rate_card("startup", 3000)
    # 17:00: 7 h used = 1 h subsidy + 6 h of the pack (4 h left).
    assert grant_subsidy_check(grant_id=grant.pk, now=at(10, 17)) == "billed"
    # 10 Nov 23:00: 13 h used, the pack's 10 h are drawn: the grace period starts at the 100 % notice.
    assert grant_subsidy_check(grant_id=grant.pk, now=at(10, 23)) == "grace"


def test_buying_hours_brings_back_a_startup_grant_suspended_for_its_spent_subsidy(db, settings):
    from billing.services.payments import _hour_pack_paid

    settings.SUBSIDY_GRACE_HOURS = 0
    org, owner = startup()
    now = timezone.now()
    grant = grant_for(org, hours=1, intervals=[(now - timedelta(hours=2), None)], node=True)
    assert grant_subsidy_check(grant_id=grant.pk, now=now) == "suspended"
    pack = hour_pack(org, owner, checkout_session_id="cs_1")
    paid = {"id": "cs_1", "payment_status": "paid", "amount_total": 33000, "currency": "krw"}
    assert _hour_pack_paid(paid, pack.pk) == "pack credited"
    grant.refresh_from_db()
    assert grant.status == G.PROVISIONING


def test_calls_and_grants_from_before_the_field_keep_the_rule_of_their_organisation_kind(db):
    """The data migrations' rule: company-only calls and companies' grants get the grace period,
    everything else is suspended at 100 % (a mixed call: suspended)."""
    import importlib

    from django.apps import apps

    from portal.models import Call
    from tests.factories import CallFactory

    calls = {
        kinds: CallFactory(eligible_kinds=list(kinds), past_subsidy="suspend")
        for kinds in (("startup",), ("startup", "sme"), ("university",), ("university", "startup"))
    }
    company, _ = startup()
    academic, _ = startup(kind=Organisation.Kind.UNIVERSITY, business_registration_number=None)
    grants = {"company": grant_for(company, past_subsidy="suspend"), "academic": grant_for(academic)}
    importlib.import_module("portal.migrations.0011_past_subsidy_policy").keep_todays_rule(apps, None)
    importlib.import_module("allocations.migrations.0015_past_subsidy_policy").keep_todays_rule(apps, None)
    rules = {kinds: Call.objects.get(pk=c.pk).past_subsidy for kinds, c in calls.items()}
    assert rules == {
        ("startup",): "grace",
        ("startup", "sme"): "grace",
        ("university",): "suspend",
        ("university", "startup"): "suspend",
    }
    assert {k: Grant.objects.get(pk=g.pk).past_subsidy for k, g in grants.items()} == {
        "company": "grace",
        "academic": "suspend",
    }
