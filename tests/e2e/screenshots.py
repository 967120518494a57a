"""`make screenshots`: the main pages in English and Korean as small PNGs in docs/screenshots/
(the README shows some). Not a test of behaviour: pytest only provides the database, the live
server and the browser. The data is the layout tests' world plus three weeks of usage hours
(written directly: pictures, not metering), a second grant and an issued invoice."""

from __future__ import annotations

import random
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from PIL import Image

from allocations.models import AccessInterval, Grant, UsageHour
from allocations.services.usage import usage_hour_build
from billing.services.invoices import invoice_issue
from portal.services import applications as svc
from tests.billing.helpers import at, grant_for
from tests.e2e.conftest import sign_in
from tests.factories import ApplicationFactory
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTH, MAX_HEIGHT = 1280, 1500


def shrink(path: Path) -> None:
    """A 256-colour palette: pages are flat colours and text, so this keeps them sharp and small."""
    with Image.open(path) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def shoot(page, path: str, name: str, width: int = WIDTH) -> None:
    assert page.goto(path).status == 200, path
    page.wait_for_load_state("networkidle")
    height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT)
    target = OUT / f"{name}.png"
    page.screenshot(path=str(target), clip={"x": 0, "y": 0, "width": width, "height": height}, full_page=True)
    shrink(target)


def three_weeks_of_use(grant: Grant) -> None:
    rng = random.Random(grant.pk)  # noqa: S311 - made-up numbers for pictures
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for h in range(1, 21 * 24):
        hour = now - timedelta(hours=h)
        quiet = rng.random() < 0.25  # nights and weekends: assigned all the same, hardly used
        util = max(0.0, min(100.0, rng.gauss(4 if quiet else 70, 3 if quiet else 15)))
        rows.append(
            UsageHour(grant=grant, hour=hour, gpu_minutes=120, sample_count=120, avg_utilization=round(util, 1),
                      energy_wh=round(2 * (90 + 6 * util), 1))
        )  # fmt: skip
    UsageHour.objects.bulk_create(rows, ignore_conflicts=True)
    # The billing basis to match: access open all along, and an award that three weeks fit in.
    AccessInterval.objects.filter(grant=grant).delete()
    AccessInterval.objects.create(grant=grant, gpu_count=2, opened_at=now - timedelta(days=21), closed_at=None)
    Grant.objects.filter(pk=grant.pk).update(gpu_hours=2000)


def test_screenshots(browser, live_server, main_pages, tmp_path):
    OUT.mkdir(parents=True, exist_ok=True)
    user, _public, _signed_in = main_pages
    grant = Grant.objects.get(application__principal_investigator=user)
    three_weeks_of_use(grant)
    org = grant.organisation
    older = grant_for(org, intervals=[(at(2, 9, month=10), at(12, 19, month=10))], copay=20, hours=500)
    older.application.title = "Climate downscaling with diffusion models"
    older.application.save(update_fields=["title"])
    for day in range(2, 13):  # its usage hours, built as the hourly job builds them
        for hour in range(24):
            usage_hour_build(hour=datetime(2026, 10, day, hour, tzinfo=UTC))
    app = ApplicationFactory(organisation=org, title="Korean speech foundation model")
    pending = svc.application_submit(application=app, actor=app.principal_investigator)
    # Issued after the submission: an overdue invoice would have made the application ineligible.
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=date(2026, 11, 1))
    reviewer = staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS, "allocations.view_node")
    reviewer.authenticator_set.all().delete()
    secret = generate_totp_secret()
    TOTP.activate(reviewer, secret)

    for language in ("en", "ko"):
        context = browser.new_context(base_url=live_server.url, viewport={"width": WIDTH, "height": 900})
        context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
        page = context.new_page()
        shoot(page, "/", f"home-{language}")
        shoot(page, "/calls/", f"calls-{language}")
        sign_in(page, user.email, settings.DEMO_PASSWORD)
        shoot(page, "/dashboard/", f"dashboard-{language}")
        page.set_viewport_size({"width": 375, "height": 800})
        shoot(page, "/dashboard/", f"dashboard-phone-{language}", width=375)
        page.set_viewport_size({"width": WIDTH, "height": 900})
        shoot(page, f"/grants/{grant.pk}/", f"grant-{language}")
        shoot(page, "/billing/invoices/", f"invoices-{language}")
        if language == "ko":  # the invoice PDF is bilingual, the same for every reader: shot once
            pdf = tmp_path / "invoice.pdf"
            pdf.write_bytes(page.request.get(f"/billing/invoices/{invoice.pk}/pdf/").body())
            png = OUT / "invoice-pdf"
            subprocess.run(
                ["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", str(pdf), str(png)], check=True
            )
            shrink(OUT / "invoice-pdf.png")
        context.clear_cookies()
        context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
        sign_in(page, reviewer.email, settings.DEMO_PASSWORD, secret)
        shoot(page, f"/admin/portal/application/{pending.pk}/review/", f"review-{language}")
        shoot(page, "/admin/fleet/", f"fleet-{language}")
        context.close()
