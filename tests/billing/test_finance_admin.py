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
