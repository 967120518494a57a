"""Credit notes: finance credits a paid invoice with a document of its own (CN- series without
gaps, negative amounts, PDF stored at issue); the invoice itself never changes."""

from __future__ import annotations

import subprocess
from datetime import date

import pytest
from django.utils import timezone

from billing.models import CreditNote, CreditNoteCounter, Invoice
from billing.services.credit_notes import credit_note_issue
from billing.services.invoices import invoice_issue, invoice_mark_paid
from portal.errors import PortalError
from portal.models import Membership
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import UserFactory
from tests.portal.test_review_admin import staff_user


@pytest.fixture
def paid(db):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])  # 6,000 + VAT 600
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return invoice_mark_paid(invoice_id=invoice.pk, reason="bank transfer")


@pytest.fixture
def finance(db):
    return staff_user("finance@centre.kr", "billing.view_invoice", "billing.issue_credit_note")


def year() -> int:
    return timezone.localdate().year


def test_finance_credits_a_paid_invoice_and_the_organisation_downloads_the_credit_note(client, paid, finance, tmp_path):
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{paid.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{paid.pk}/credit/" in page
    response = client.post(f"/admin/billing/invoice/{paid.pk}/credit/", {"reason": "node outage on 2 Nov"})
    assert response.status_code == 302
    note = CreditNote.objects.get()
    assert (note.number, note.supply_krw, note.vat_krw, note.total_krw) == (f"CN-{year()}-000001", -6000, -600, -6600)
    paid.refresh_from_db()
    assert paid.status == Invoice.Status.PAID and paid.total_krw == 6600  # the invoice does not change
    assert paid.events.filter(reason__startswith=f"credit note CN-{year()}-000001").exists()

    member = paid.organisation.memberships.get(role=Membership.Role.BILLING).user
    client.force_login(member)
    assert note.number in client.get("/billing/invoices/").content.decode()
    pdf = client.get(f"/billing/credit-notes/{note.pk}/pdf/")
    assert pdf.content == bytes(note.document)
    (tmp_path / "cn.pdf").write_bytes(pdf.content)
    text = subprocess.run(
        ["pdftotext", "-layout", str(tmp_path / "cn.pdf"), "-"], capture_output=True, text=True
    ).stdout
    for expected in (note.number, paid.number, "-₩6,000", "-₩600", "-₩6,600", "node outage on 2 Nov"):
        assert expected in text, (expected, text)
    for both in ("크레딧 노트 / Credit note", "사유", "Reason", "공급가액", "Supply value", "합계", "Total"):
        assert both in text, (both, text)
    client.force_login(UserFactory())
    assert client.get(f"/billing/credit-notes/{note.pk}/pdf/").status_code == 404


def test_partial_credits_never_exceed_the_invoice_and_numbers_stay_gapless(paid, finance):
    first = credit_note_issue(invoice_id=paid.pk, actor=finance, reason="one day lost", supply_krw=2000)
    assert (first.supply_krw, first.vat_krw) == (-2000, -200)
    with pytest.raises(PortalError):
        credit_note_issue(invoice_id=paid.pk, actor=finance, reason="too much", supply_krw=4001)
    rest = credit_note_issue(invoice_id=paid.pk, actor=finance, reason="the rest")
    assert (rest.number, rest.supply_krw, rest.vat_krw) == (f"CN-{year()}-000002", -4000, -400)
    assert CreditNoteCounter.objects.get(year=year()).last == 2
    with pytest.raises(PortalError):
        credit_note_issue(invoice_id=paid.pk, actor=finance, reason="again")


def test_an_open_invoice_or_someone_without_the_permission_gets_no_credit_note(client, paid, finance, db):
    rate_card("startup", 3000, since=date(2025, 1, 1))
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    open_invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    with pytest.raises(PortalError):
        credit_note_issue(invoice_id=open_invoice.pk, actor=finance, reason="x")
    viewer = staff_user("viewer@centre.kr", "billing.view_invoice")
    with pytest.raises(PortalError):
        credit_note_issue(invoice_id=paid.pk, actor=viewer, reason="x")
    client.force_login(viewer)
    assert client.post(f"/admin/billing/invoice/{paid.pk}/credit/", {"reason": "x"}).status_code == 403
    assert not CreditNote.objects.exists()
