"""Findings of the outside review of billing (issue 11), each reproduced as a test: what its users
and attackers did, and what they must see."""

from __future__ import annotations

from datetime import date

from django.core import mail

from billing.models import Invoice, InvoiceLine, Rate
from billing.services.invoices import invoice_issue, invoices_run
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.billing.test_invoicing import paid_pack

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)


def test_a_month_invoiced_after_a_later_one_does_not_draw_a_pack_a_second_time(db):
    """October failed (no A100 rate yet) and November was invoiced; finance publishes the rate and
    reruns October, as docs/billing.md says. The 10 h pack must not give 12 h."""
    rate_card("startup", 3000)
    org, _ = startup()
    # 1 h subsidy at 20 %. October: 7 h of H100 and 1 h of A100 (no rate: the run fails);
    # November: 6 h of H100.
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    grant_for(org, hours=1, model="A100-80GB", intervals=[(at(5, 9, month=10), at(5, 10, month=10))])
    paid_pack(org, 10, at(1, 0, month=10))
    assert invoices_run(month=OCT, today=NOV)["failed"] == 1
    invoices_run(month=NOV, today=date(2026, 12, 1))
    Rate.objects.create(gpu_model="A100-80GB", price_tier="startup", krw_per_gpu_hour=2000, effective_from=OCT)
    assert invoices_run(month=OCT, today=date(2026, 12, 2))["issued"] == 1
    prepaid = InvoiceLine.objects.filter(invoice__organisation=org, kind="prepaid")
    assert sum(prepaid.values_list("gpu_minutes", flat=True)) == 600  # the whole pack, once
    # November drew 6 h first; October gets the 4 h left, the rest billed: H100 1 h subsidised
    # (600) + 2 h billable (6,000); A100 1 h subsidised at 20 % of 2,000 (400).
    october = Invoice.objects.get(organisation=org, month=OCT)
    assert october.supply_krw == 7000


def test_invoice_and_subsidy_e_mails_are_written_in_each_recipients_language(db, jobs):
    """An English-speaking billing member reads English; the Korean owner of another organisation
    reads Korean."""
    rate_card("startup", 3000)
    org, _ = startup()
    member = org.memberships.get(role="billing").user
    member.language = "en"
    member.save(update_fields=["language"])
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    jobs.run()
    [sent] = [m for m in mail.outbox if m.to == [member.email]]
    assert sent.subject == f"Invoice {invoice.number} for 2026-11", sent.subject
    korean = [m for m in mail.outbox if m.to == [org.memberships.get(role="owner").user.email]]
    assert korean == []  # the owner hears nothing while there is a billing member


def test_the_subsidy_alert_is_written_in_the_recipients_language(db, jobs):
    from billing.services.consequences import grant_subsidy_check

    rate_card("startup", 3000)
    org, owner = startup()
    owner.language = "en"
    owner.save(update_fields=["language"])
    grant = grant_for(org, hours=10, intervals=[(at(2, 9), at(2, 18))])  # 9 of 10 h: 90 %
    with jobs.committed():
        grant_subsidy_check(grant_id=grant.pk, now=at(3, 0))
    jobs.run()
    to_owner = [m.subject for m in mail.outbox if m.to == [owner.email]]
    to_member = [m.subject for m in mail.outbox if m.to == [org.memberships.get(role="billing").user.email]]
    assert to_owner == [f"Grant #{grant.pk}: 80 % of the subsidised GPU-hours used"]
    assert to_member == [f"지원 과제 #{grant.pk}: 지원 GPU 시간의 80 % 사용"]
