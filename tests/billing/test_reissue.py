"""Re-issuing a month after its invoice was voided: finance (permission
`billing.reissue_invoice`) issues a corrected invoice, with a new number from the same gapless
series, priced from the ledger as it is now, naming the void invoice it replaces; the void
invoice keeps its number, PDF and history. At most one live (non-void) invoice per organisation
and month; the monthly run never re-issues a voided month by itself."""

from __future__ import annotations

import html
import subprocess
from datetime import date

import pytest
from django.db import IntegrityError, transaction

from billing.models import BillingAccount, Invoice, InvoiceCounter, InvoiceDocument, Rate
from billing.services.invoices import CHARGE_JOB, invoice_issue, invoice_reissue, invoice_void, invoices_run
from portal.errors import PortalError
from portal.models import Membership, OutboxMessage
from tests.billing.helpers import at, grant_for, hour_pack, race, rate_card, startup
from tests.portal.test_review_admin import staff_user

OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
FINANCE = ("billing.view_invoice", "billing.void_invoice", "billing.reissue_invoice")


def voided(*, finance=None, **grant) -> Invoice:
    """November of a startup: 10 h x ₩3,000 x 20 % = ₩6,000 + VAT ₩600 (INV-2026-000001), voided."""
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))], **grant)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    finance = finance or staff_user("void@centre.kr", "billing.void_invoice")
    return invoice_void(invoice_id=invoice.pk, actor=finance, reason="published rate was wrong")


def pdf_text(content: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-", "-"], input=bytes(content), capture_output=True, check=True
    ).stdout.decode()


def test_finance_reissues_a_voided_month_at_the_corrected_rate_with_a_new_number_naming_the_void_one(client, db):
    old = voided()
    old_pdf = bytes(old.document.content)
    # The wrong rate is corrected (₩3,000 → ₩2,500): 10 h x 2,500 x 20 % = 5,000 + VAT 500.
    Rate.objects.filter(gpu_model="H100-80GB", price_tier="startup").update(krw_per_gpu_hour=2500)
    finance = staff_user("finance@centre.kr", *FINANCE)
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{old.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{old.pk}/reissue/" in page
    form = client.get(f"/admin/billing/invoice/{old.pk}/reissue/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "₩5,500" in form and "₩6,600" in form  # what the re-issue will be, beside the void one
    done = client.post(f"/admin/billing/invoice/{old.pk}/reissue/", {"reason": "rate corrected to 2,500"})
    new = Invoice.objects.exclude(pk=old.pk).get()
    assert done.status_code == 302 and done["Location"] == f"/admin/billing/invoice/{new.pk}/change/"
    assert (new.number, new.status, new.replaces_id, new.month) == ("INV-2026-000002", "open", old.pk, NOV)
    assert (new.supply_krw, new.vat_krw, new.total_krw) == (5000, 500, 5500)
    assert list(new.lines.values_list("kind", "krw_per_gpu_hour", "amount_krw")) == [("subsidised", 2500, 5000)]
    assert InvoiceCounter.objects.get(year=2026).last == 2
    # The void invoice keeps its number, its PDF byte for byte, and says what replaced it.
    old.refresh_from_db()
    assert (old.number, old.status, old.replaced_by) == ("INV-2026-000001", "void", new)
    assert bytes(InvoiceDocument.objects.get(invoice=old).content) == old_pdf
    # Audit: who, when, why, on both invoices.
    issued = new.events.get()
    assert (issued.actor, issued.new_status) == (finance, "open")
    assert issued.reason == "re-issued, replaces INV-2026-000001: rate corrected to 2,500"
    assert old.events.last().actor == finance
    assert old.events.last().reason == "re-issued as INV-2026-000002: rate corrected to 2,500"
    # The new invoice's own PDF, stored once, names the one it replaces in Korean and English.
    text = pdf_text(InvoiceDocument.objects.get(invoice=new).content)
    assert "INV-2026-000002" in text and "Replaces invoice INV-2026-000001" in text
    assert "INV-2026-000001" in text.split("Replaces invoice")[0]  # the Korean line comes first
    assert "₩5,500" in text


def test_the_prepaid_hours_of_the_void_invoice_are_drawn_once_by_its_reissue(db):
    rate_card("startup", 3000)
    org, owner = startup()
    # 1 h subsidy at 20 %; a 10 h pack bought 1 Oct. October: 1 h subsidised + 6 h prepaid.
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    pack = hour_pack(org, owner, hours=10, status="paid", paid_at=at(1, month=10))
    october, _ = invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    invoice_void(invoice_id=october.pk, actor=staff_user("v@centre.kr", "billing.void_invoice"), reason="error")
    again = invoice_reissue(invoice_id=october.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="fixed")
    assert list(again.lines.values_list("kind", "gpu_minutes", "hour_pack")) == [
        ("subsidised", 60, None),
        ("prepaid", 360, pack.pk),
    ]
    # November gets the 4 h the re-issue left (not the 6 h of the void invoice back a second time):
    # 6 h = 4 h prepaid + 2 h billable x 3,000 = 6,000 + VAT 600.
    november, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert list(november.lines.values_list("kind", "gpu_minutes", "hour_pack")) == [
        ("prepaid", 240, pack.pk),
        ("billable", 120, None),
    ]
    assert november.total_krw == 6600


def test_a_later_month_invoiced_after_the_void_keeps_its_hours_and_the_reissue_gets_what_is_left(db):
    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    pack = hour_pack(org, owner, hours=10, status="paid", paid_at=at(1, month=10))
    october, _ = invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    invoice_void(invoice_id=october.pk, actor=staff_user("v@centre.kr", "billing.void_invoice"), reason="error")
    november, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)  # 6 h from the pack
    assert list(november.lines.values_list("kind", "gpu_minutes")) == [("prepaid", 360)]
    # October re-issued: 1 h subsidised (600) + the 4 h November left + 2 h billable (6,000).
    again = invoice_reissue(invoice_id=october.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="fixed")
    assert list(again.lines.values_list("kind", "gpu_minutes", "hour_pack", "amount_krw")) == [
        ("subsidised", 60, None, 600),
        ("prepaid", 240, pack.pk, 0),
        ("billable", 120, None, 6000),
    ]
    assert again.total_krw == 7260


def test_reissue_is_refused_while_the_month_has_a_live_invoice(client, db):
    old = voided()
    finance = staff_user("finance@centre.kr", *FINANCE)
    new = invoice_reissue(invoice_id=old.pk, actor=finance, reason="rate corrected")
    with pytest.raises(PortalError) as refused:
        invoice_reissue(invoice_id=old.pk, actor=finance, reason="again")
    assert refused.value.code == "live" and "INV-2026-000002" in str(refused.value.message)
    with pytest.raises(PortalError) as open_one:
        invoice_reissue(invoice_id=new.pk, actor=finance, reason="not void")
    assert open_one.value.code == "not_void"
    client.force_login(finance)
    page = client.post(f"/admin/billing/invoice/{old.pk}/reissue/", {"reason": "again"}, HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    assert "INV-2026-000002 is this month's invoice" in html.unescape(page.content.decode())
    assert Invoice.objects.count() == 2 and InvoiceCounter.objects.get(year=2026).last == 2


def test_a_void_reissue_is_itself_reissued_and_the_first_void_invoice_cannot_be_reissued_twice(db):
    old = voided()
    finance = staff_user("finance@centre.kr", *FINANCE)
    second = invoice_reissue(invoice_id=old.pk, actor=finance, reason="rate corrected")
    invoice_void(invoice_id=second.pk, actor=finance, reason="buyer name wrong")
    with pytest.raises(PortalError) as refused:
        invoice_reissue(invoice_id=old.pk, actor=finance, reason="again")
    assert refused.value.code == "replaced" and "INV-2026-000002" in str(refused.value.message)
    third = invoice_reissue(invoice_id=second.pk, actor=finance, reason="buyer name fixed")
    assert (third.number, third.replaces_id) == ("INV-2026-000003", second.pk)


def test_a_second_live_invoice_for_a_month_is_refused_by_the_database(db):
    old = voided()
    fields = {f.name: getattr(old, f.name) for f in Invoice._meta.fields if f.name not in {"id", "status", "number"}}
    Invoice.objects.create(**fields, number="INV-2026-000009", status="open")  # a void one beside it: allowed
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(**fields, number="INV-2026-000010", status="open")


def test_staff_without_the_reissue_permission_cannot_reissue(client, db):
    old = voided()
    void_only = staff_user("void-only@centre.kr", "billing.view_invoice", "billing.void_invoice")
    client.force_login(void_only)
    change = client.get(f"/admin/billing/invoice/{old.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{old.pk}/reissue/" not in change
    assert client.get(f"/admin/billing/invoice/{old.pk}/reissue/").status_code == 403
    assert client.post(f"/admin/billing/invoice/{old.pk}/reissue/", {"reason": "x"}).status_code == 403
    with pytest.raises(PortalError) as refused:
        invoice_reissue(invoice_id=old.pk, actor=void_only, reason="x")
    assert refused.value.code == "forbidden"
    assert Invoice.objects.count() == 1


def test_a_reissue_needs_a_reason_and_the_csrf_token(db):
    from django.test import Client

    old = voided()
    finance = staff_user("finance@centre.kr", *FINANCE)
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(finance)
    assert forged.post(f"/admin/billing/invoice/{old.pk}/reissue/", {"reason": "x"}).status_code == 403
    client = Client()
    client.force_login(finance)
    page = client.post(f"/admin/billing/invoice/{old.pk}/reissue/", {"reason": "   "})
    assert page.status_code == 200 and page.context["form"].errors
    assert Invoice.objects.count() == 1


def test_a_month_with_nothing_left_to_invoice_is_not_reissued(db):
    old = voided()
    # The grant's interval was recorded by mistake: without it there is nothing to invoice.
    old.lines.get().grant.access_intervals.all().delete()
    with pytest.raises(PortalError) as refused:
        invoice_reissue(invoice_id=old.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="no use")
    assert refused.value.code == "nothing"
    assert Invoice.objects.count() == 1 and InvoiceCounter.objects.get(year=2026).last == 1


def test_a_month_that_cannot_be_priced_is_not_reissued_and_takes_no_number(client, db):
    old = voided()
    Rate.objects.all().delete()  # the rate was withdrawn and no corrected one is published yet
    finance = staff_user("f@centre.kr", *FINANCE)
    with pytest.raises(PortalError) as refused:
        invoice_reissue(invoice_id=old.pk, actor=finance, reason="rate corrected")
    assert refused.value.code == "ledger" and "H100-80GB" in str(refused.value.message)
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{old.pk}/reissue/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "The month cannot be priced: no published rate for H100-80GB" in page
    assert Invoice.objects.count() == 1 and InvoiceCounter.objects.get(year=2026).last == 1


@pytest.mark.django_db(transaction=True)
def test_two_reissues_at_once_make_one_invoice():
    old = voided()
    finance = staff_user("finance@centre.kr", *FINANCE)
    outcomes = race(*[lambda: invoice_reissue(invoice_id=old.pk, actor=finance, reason="double click")] * 2)
    assert sorted(outcomes) == ["done", "live"]  # one re-issued, the other found it live
    assert Invoice.objects.exclude(status="void").count() == 1
    assert InvoiceCounter.objects.get(year=2026).last == 2


def test_the_monthly_run_after_a_void_makes_no_second_invoice_and_says_the_month_is_void(db):
    old = voided()
    lines: list[str] = []
    counts = invoices_run(month=NOV, today=DEC, out=lines.append)
    assert (counts["issued"], counts["void"]) == (0, 1)
    assert any("INV-2026-000001 void" in x and "re-issue" in x for x in lines)
    assert Invoice.objects.count() == 1 and InvoiceCounter.objects.get(year=2026).last == 1
    new = invoice_reissue(invoice_id=old.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="fixed")
    counts = invoices_run(month=NOV, today=DEC, out=lines.append)
    assert (counts["issued"], counts["existing"], counts["void"]) == (0, 1, 0)
    assert any(f"{new.number} ₩6,600 already issued" in x for x in lines)
    assert Invoice.objects.count() == 2


def test_the_customer_sees_the_void_invoice_marked_void_and_the_one_that_replaces_it(client, db):
    old = voided()
    new = invoice_reissue(invoice_id=old.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="fixed")
    client.force_login(old.organisation.memberships.get(role=Membership.Role.BILLING).user)
    page = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert page.index(new.number) < page.index("Void")  # the live invoice first
    assert f"replaces {old.number}" in page
    assert page.count(f'action="/billing/invoices/{new.pk}/pay/"') == 1
    assert f'action="/billing/invoices/{old.pk}/pay/"' not in page
    korean = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert f"{old.number} 대체" in korean
    assert client.get(f"/billing/invoices/{new.pk}/pdf/").status_code == 200
    assert client.get(f"/billing/invoices/{old.pk}/pdf/").status_code == 200


def test_a_reissued_invoice_is_mailed_and_charged_to_the_saved_card_like_any_invoice(db, localstripe, jobs):
    from django.core import mail

    from billing import stripe_client
    from billing.services import payments

    old = voided()
    org = old.organisation
    account = payments.billing_account_get_or_create(organisation=org, email="billing@s.kr")
    pm = stripe_client.payment_method_attach(customer=account.stripe_customer_id, payment_method="pm_card_visa")
    BillingAccount.objects.filter(pk=account.pk).update(default_payment_method=pm)
    with jobs.committed():
        new = invoice_reissue(invoice_id=old.pk, actor=staff_user("f@centre.kr", *FINANCE), reason="fixed")
    assert list(OutboxMessage.objects.filter(func=CHARGE_JOB).values_list("args", flat=True)) == [[new.pk]]
    assert payments.invoice_charge(invoice_id=new.pk) == "paid"
    assert payments.invoice_charge(invoice_id=old.pk) == "not open"
    new.refresh_from_db()
    assert new.status == Invoice.Status.PAID
    jobs.run()
    issued = [m for m in mail.outbox if new.number in m.subject and "INV-2026-000001" in m.body]
    assert issued, [m.subject for m in mail.outbox]
