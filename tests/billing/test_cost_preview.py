"""Cost before commitment: the application form shows the subsidy's value, the co-payment and VAT
(server-rendered; static/js/cost-preview.js recomputes as one types), the review and decide pages
show them for the request and the award, the grant page and dashboard show the month's costs."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from billing.services.estimates import estimate, grant_month
from portal.models import Membership
from tests.billing.helpers import grant_for, rate_card, startup
from tests.factories import CallFactory


def test_the_founders_case_8000_h100_hours_at_20_percent():
    # 8,000 h x 3,000 = 24,000,000; 20 % = 4,800,000; VAT 480,000.
    e = estimate(krw_per_gpu_hour=3000, gpu_hours=8000, copay_percent=20)
    assert (e.subsidy_value_krw, e.copay_krw, e.vat_krw, e.total_krw) == (24_000_000, 4_800_000, 480_000, 5_280_000)


def test_the_application_form_shows_the_co_payment_for_what_was_typed(client, db):
    rate_card("startup", 3000)
    org, founder = startup()
    call = CallFactory(copay_percent=20, eligible_kinds=["startup"])
    client.force_login(founder)
    page = client.get(f"/calls/{call.pk}/apply/")
    html = page.content.decode()
    assert 'id="cost-preview"' in html and "js/cost-preview.js" in html
    assert f"{{&quot;{org.pk}&quot;: {{&quot;H100-80GB&quot;: 3000}}}}" in html  # the rates the script uses
    # Without JavaScript: what was typed is priced when the form comes back (here: a draft saved
    # with an error elsewhere keeps the values and shows the cost).
    posted = client.post(
        f"/calls/{call.pk}/apply/",
        {"organisation": org.pk, "gpu_model": "H100-80GB", "gpu_hours": "8000", "gpu_count": "abc", "save": "1"},
    )
    text = posted.content.decode()
    assert "4,800,000원" in text and "480,000원" in text and "24,000,000원" in text


def test_the_grant_page_shows_hours_used_and_the_months_costs(client, db):
    rate_card("startup", 3000)
    org, owner = startup()
    now = timezone.now()
    grant = grant_for(org, hours=100, intervals=[(now - timedelta(hours=10), None)])
    month = grant_month(grant, now=now)
    assert (month.used_hours, month.left_hours) == (10, 90)
    # 10 h x 3,000 x 20 % = 6,000 so far (if the month began more than 10 h ago).
    if (now - timedelta(hours=10)).month == now.month:
        assert month.accrued_krw == 6000 and month.estimate_krw >= 6000
    client.force_login(owner)
    page = client.get(f"/grants/{grant.pk}/").content.decode()
    assert "grant-costs" in page
    assert Membership.objects.filter(user=owner, role="owner").exists()
    assert "grant-costs" in client.get("/dashboard/").content.decode()


def test_review_and_decide_pages_show_the_cost_of_the_request_and_of_the_award(client, db):
    from portal.services import applications as svc
    from tests.factories import ApplicationFactory
    from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

    rate_card("academic", 2000)
    app = ApplicationFactory(call=CallFactory(copay_percent=10), gpu_hours=1000)
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    app = svc.application_start_review(application=app, actor=approver)
    client.force_login(approver)
    # Request: 1,000 h x 2,000 = 2,000,000; 10 % = 200,000; VAT 20,000.
    review = client.get(f"/admin/portal/application/{app.pk}/review/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "200,000" in review and "2,000,000" in review and "20,000" in review
    # The award as edited (500 h) after a refused form: 1,000,000; 100,000; VAT 10,000.
    decide = client.post(
        f"/admin/portal/application/{app.pk}/decide/",
        {"action": "approve", "gpu_model": "H100-80GB", "gpu_hours": "500", "gpu_count": ""},
        HTTP_ACCEPT_LANGUAGE="en",
    ).content.decode()
    assert 'id="cost-preview"' in decide and "100,000" in decide and "10,000" in decide
