"""Dates read the same in Korean and English, as the rest of the portal writes them: ISO days
(2024-03-01) and moments with minutes and the portal's zone (2026-12-14 09:30 KST), on the
portal's pages, the admin's change lists and the fleet page, through portal/formats (no
"12/14/2026", "Oct. 1, 2026" or "2024년 3월 1일")."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from allocations.models import Node
from billing.models import InvoicingRun
from billing.services.invoices import invoice_issue
from portal.models import Invitation, Membership, Organisation
from tests.allocations.test_fleet_page import OPERATOR_PERMS
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import InvitationFactory, MembershipFactory, OrganisationFactory
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db

FOUNDED = date(2024, 3, 1)


def minute(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M KST")


@pytest.fixture
def organisation():
    org = OrganisationFactory(kind=Organisation.Kind.STARTUP, founded_on=FOUNDED)
    Organisation.objects.filter(pk=org.pk).update(created_at=timezone.now() - timedelta(days=40, minutes=7))
    org.refresh_from_db()
    return org


@pytest.mark.parametrize("language", ["en", "ko"])
def test_an_owner_reads_iso_dates_on_the_organisation_page(client, organisation, language):
    owner = MembershipFactory(organisation=organisation, role=Membership.Role.OWNER).user
    invitation = InvitationFactory(organisation=organisation, invited_by=owner)
    Invitation.objects.filter(pk=invitation.pk).update(created_at=timezone.now() - timedelta(hours=5, minutes=3))
    invitation.refresh_from_db()
    client.force_login(owner)
    client.cookies["django_language"] = language
    body = client.get(f"/organisations/{organisation.pk}/").content.decode()
    assert "<dd>2024-03-01</dd>" in body
    assert minute(invitation.expires_at) in body


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_admin_change_list_writes_iso_dates(client, organisation, language):
    client.force_login(staff_user("operator@ministry.go.kr", "portal.view_organisation"))
    body = client.get("/admin/portal/organisation/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert '<td class="field-founded_on nowrap">2024-03-01</td>' in body
    assert f'<td class="field-created_at nowrap">{minute(organisation.created_at)}</td>' in body


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_fleet_page_writes_iso_moments(client, language):
    silent_since = datetime(2026, 3, 5, 0, 30, tzinfo=UTC)  # 09:30 in Seoul; silent since
    Node.objects.create(
        hostname="gpu-quiet", address="127.0.0.1", gpu_model="H100-80GB", status=Node.Status.ONLINE,
        last_sample_at=silent_since,
    )  # fmt: skip
    client.force_login(staff_user("operator@ministry.go.kr", *OPERATOR_PERMS))
    body = client.get("/admin/fleet/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert "gpu-quiet" in body
    assert "<td>2026-03-05 09:30 KST</td>" in body


@pytest.mark.parametrize("language", ["en", "ko"])
def test_finance_reads_an_invoice_month_as_the_portal_writes_months(client, language):
    """A month is stored as its first day; the admin writes it as a month (2026-11), as the
    invoices page, the PDF and the e-mails do, on the list and on the invoice's page."""
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice", "billing.view_invoicingrun"))
    listed = client.get("/admin/billing/invoice/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert '<td class="field-billing_month">2026-11</td>' in listed
    assert '<td class="field-due">2026-12-' in listed
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
    assert '<div class="readonly">2026-11</div>' in page.content.decode()
    run = InvoicingRun.objects.create(month=date(2026, 11, 1))
    runs = client.get("/admin/billing/invoicingrun/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert f'<th class="field-billing_month"><a href="/admin/billing/invoicingrun/{run.pk}/change/">2026-11</a>' in runs
