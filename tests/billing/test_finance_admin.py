"""Finance staff see invoices, their lines and events in the admin, export them, and cannot edit
or delete them (the portal is the system of record)."""

from datetime import date

from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from billing.services.invoices import invoice_issue
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import UserFactory


def test_finance_sees_and_exports_invoices_but_cannot_change_them(client, db):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    finance = UserFactory(email="finance@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(finance, generate_totp_secret())
    client.force_login(finance)
    assert invoice.number in client.get("/admin/billing/invoice/").content.decode()
    detail = client.get(f"/admin/billing/invoice/{invoice.pk}/change/")
    assert detail.status_code == 200 and b'name="total_krw"' not in detail.content
    export = client.post("/admin/billing/invoice/", {"action": "export_csv", "_selected_action": [invoice.pk]})
    assert export["Content-Type"].startswith("text/csv")
    assert f"{invoice.number},2026-11" in export.content.decode()
    assert client.post(f"/admin/billing/invoice/{invoice.pk}/delete/", {"post": "yes"}).status_code == 403


def issued(**grant):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))], **grant)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return invoice


def test_finance_voids_an_unpaid_invoice_with_a_reason_kept_in_its_history(client, db):
    from billing.models import Invoice
    from billing.services.payments import invoice_charge
    from tests.portal.test_review_admin import staff_user

    invoice = issued()
    finance = staff_user("finance@centre.kr", "billing.view_invoice", "billing.void_invoice")
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{invoice.pk}/void/" in page
    empty = client.post(f"/admin/billing/invoice/{invoice.pk}/void/", {"reason": "  "})
    assert empty.status_code == 200 and Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN
    done = client.post(f"/admin/billing/invoice/{invoice.pk}/void/", {"reason": "duplicate of a bank transfer"})
    assert done.status_code == 302
    invoice.refresh_from_db()
    event = invoice.events.last()
    assert (invoice.status, invoice.number) == (Invoice.Status.VOID, "INV-2026-000001")
    assert (event.actor, event.old_status, event.reason) == (finance, "open", "void: duplicate of a bank transfer")
    assert invoice_charge(invoice_id=invoice.pk) == "not open"  # a void invoice is never charged


def test_staff_without_the_void_permission_cannot_void(client, db):
    from billing.models import Invoice
    from tests.portal.test_review_admin import staff_user

    invoice = issued()
    client.force_login(staff_user("viewer@centre.kr", "billing.view_invoice"))
    assert client.post(f"/admin/billing/invoice/{invoice.pk}/void/", {"reason": "x"}).status_code == 403
    assert Invoice.objects.get(pk=invoice.pk).status == Invoice.Status.OPEN


def test_a_paid_invoice_cannot_be_voided(db):
    import pytest

    from billing.services.invoices import invoice_mark_paid, invoice_void
    from portal.errors import PortalError
    from tests.portal.test_review_admin import staff_user

    invoice = issued()
    invoice_mark_paid(invoice_id=invoice.pk, reason="bank transfer")
    with pytest.raises(PortalError):
        invoice_void(invoice_id=invoice.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="late")
