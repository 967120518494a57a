"""The eligibility rule "no overdue invoice" reads real invoices: an organisation with an invoice
past its due date cannot submit, and can again once it is paid."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from billing.models import Invoice
from billing.services.invoices import invoice_mark_paid
from portal.errors import PortalError
from portal.models import EligibilityResult
from portal.services import applications as svc
from tests.factories import ApplicationFactory


def overdue_for(org) -> Invoice:
    today = timezone.localdate()
    return Invoice.objects.create(
        organisation=org,
        month=date(2026, 10, 1),
        number="INV-2026-000001",
        issued_on=today - timedelta(days=30),
        due_on=today - timedelta(days=1),
        supply_krw=1000,
        vat_krw=100,
        total_krw=1100,
        vat_percent=10,
        supplier_name="센터",
        supplier_brn="1208147521",
        buyer_name=org.name_ko,
    )


def test_an_overdue_invoice_blocks_submission_until_it_is_paid(db):
    app = ApplicationFactory()
    invoice = overdue_for(app.organisation)
    with pytest.raises(PortalError):
        svc.application_submit(application=app, actor=app.principal_investigator)
    failed = EligibilityResult.objects.filter(application=app, rule="overdue_invoice").latest("pk")
    assert failed.outcome == "fail"
    invoice_mark_paid(invoice_id=invoice.pk, reason="bank transfer")
    app.refresh_from_db()
    svc.application_submit(application=app, actor=app.principal_investigator)
    app.refresh_from_db()
    assert app.status == "submitted"
