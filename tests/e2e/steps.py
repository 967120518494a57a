"""Steps of the browser journeys, shared by the journey tests and the shorter tests that check
one part of them: what a researcher, founder, reviewer or approver does in the browser, and the
stand-ins for time passing (a day of replayed samples) and for the payment provider."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import requests
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core import mail
from django.test import Client
from django.utils import timezone

from allocations.models import AccessInterval, Assignment, Grant, JupyterSession, NodeAccount
from allocations.services.jupyter import session_token
from allocations.services.sample_tokens import node_samples_token_rotate
from allocations.services.usage import usage_hours_build_due
from tests.allocations.helpers import ssh_as
from tests.allocations.jupyter_client import http_status, ssh_tunnel
from tests.allocations.metering_helpers import post, samples_every_minute
from tests.billing.conftest import event, signed
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

APPROVER_PERMS = (*REVIEWER_PERMS, "portal.decide_application")
SCORES = ("merit", "feasibility", "national_priority", "resource_justification")


def staff_with_totp(email: str, *perms: str) -> tuple[object, str]:
    """A staff account with `perms` and an authenticator app; returns (user, TOTP secret)."""
    user = staff_user(email, *perms)
    user.authenticator_set.all().delete()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return user, secret


def sign_up_and_confirm(page, jobs, email: str, password: str) -> None:
    """Sign up, follow the confirmation link of the e-mail the background job sent (the test
    outbox), confirm: the browser ends on the dashboard, signed in."""
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)
    page.click("main form[action='/accounts/signup/'] button[type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    assert jobs.run() >= 1  # the confirmation mail is sent by a background job
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+)", mail.outbox[-1].body).group(1)
    page.goto(link)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/dashboard/")


def add_key_in_browser(page, tmp_path: Path, name: str) -> tuple[Path, str]:
    """Make an ed25519 key pair and add its public half on the keys page; returns (private key
    path, the keys page's text)."""
    key = tmp_path / f"{name}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    page.goto("/keys/")
    page.fill("input[name=name]", "laptop")
    page.fill("textarea[name=public_key]", key.with_suffix(".pub").read_text())
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/keys/")
    return key, page.inner_text("main")


def application_start(page, call, *, organisation: str, title: str, save: bool = True) -> None:
    """From the calls page, start an application for `organisation` (its label) and save it
    (or leave the form open, to type more, when `save` is false)."""
    page.goto("/calls/")
    page.click(f"a[href='/calls/{call.pk}/apply/']")
    page.select_option("select[name=organisation]", label=organisation)
    page.fill("input[name=title]", title)
    if save:
        application_save(page)


def application_save(page) -> None:
    page.click("button[name=save]")
    page.wait_for_url("**/applications/*/")


def application_fill_and_submit(page, call, *, gpu_hours: int, gpu_count: int = 4) -> None:
    """Edit the saved application, fill what submitting needs (H100s, the call's window) and
    submit; the browser ends on the application's page."""
    page.click("text=Edit")
    page.fill("textarea[name=abstract]", "Speech recognition for Korean dialects.")
    page.select_option("select[name=field]", "nlp")
    page.select_option("select[name=gpu_model]", "H100-80GB")
    page.fill("input[name=gpu_count]", str(gpu_count))
    page.fill("input[name=gpu_hours]", str(gpu_hours))
    page.fill("input[name=starts_on]", call.allocation_starts_on.isoformat())
    page.fill("input[name=ends_on]", call.allocation_ends_on.isoformat())
    page.fill("textarea[name=justification]", "Four GPUs for a year.")
    page.select_option("select[name=data_sensitivity]", "personal")
    page.click("button[name=submit]")
    page.wait_for_url("**/applications/*/")


def admin_review(page, application_pk: int, *, score: int = 4, start: bool = True) -> None:
    """In the admin: start the review (unless started) and score the application."""
    page.goto(f"/admin/portal/application/{application_pk}/change/")
    if start:
        page.click("text=Start the review")
    page.click("text=Write or edit your review")
    for field in SCORES:
        page.check(f"input[name={field}][value='{score}']")
    page.select_option("select[name=recommendation]", "approve")
    page.fill("textarea[name=comment]", "Sound plan.")
    page.click("input[type=submit]")
    # Back on the change page: the review is saved and no response is still on its way (one
    # arriving after a sign-out would set the reviewer's session cookie again).
    page.wait_for_url(f"**/admin/portal/application/{application_pk}/change/")


def admin_approve(
    page, application_pk: int, *, days: int | None = 30, gpu_hours: int | None = None, reason: str = "Approved."
) -> None:
    """In the admin: approve from today for `days` days (before the call's allocation window,
    confirmed), or for the dates asked when `days` is None; optionally with other GPU-hours."""
    page.goto(f"/admin/portal/application/{application_pk}/change/")
    page.click("text=Decide")
    page.check("input[name=action][value=approve]")
    if days is not None:
        today = timezone.localdate()
        page.fill("input[name=starts_on]", today.isoformat())
        page.fill("input[name=ends_on]", (today + timedelta(days=days)).isoformat())
        page.check("input[name=confirm_outside_window]")  # the call's window opens later
    if gpu_hours is not None:
        page.fill("input[name=gpu_hours]", str(gpu_hours))
    page.fill("textarea[name=reason]", reason)
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/portal/application/{application_pk}/change/")


def wait_for_grant_page_status(page, jobs, grant: Grant, status: str, timeout: float = 60.0) -> Grant:
    """Run the queued jobs (the RQ worker, in this process) and reload the grant page until it
    shows `status` (the status paragraph's class; its label is in the user's language); returns
    the grant as stored."""
    deadline = time.monotonic() + timeout
    while True:
        jobs.run()
        page.goto(f"/grants/{grant.pk}/")
        if page.locator(f"p.status-{status}").count():
            grant.refresh_from_db()
            return grant
        grant.refresh_from_db()
        assert time.monotonic() < deadline, (grant.status, grant.status_reason)
        time.sleep(0.3)


def researcher_reaches_the_node(page, grant: Grant, node, key: Path, tmp_path: Path) -> NodeAccount:
    """On the grant page and the dashboard the researcher finds the ssh command of their account
    (with working copy buttons) and the Jupyter tunnel; the command logs in with their key and
    JupyterLab answers through the tunnel. Returns the account."""
    user = grant.application.principal_investigator
    account = NodeAccount.objects.get(user=user, node=node)
    page.goto(f"/grants/{grant.pk}/")
    command = f"ssh -p {node.ssh_port} {account.username}@{node.address}"
    assert command in page.inner_text("main")
    assert page.inner_text("#grant-ssh") == command
    assert page.locator("button[data-copy='grant-ssh']").is_visible()  # shown once the script runs
    assert ssh_as(node, account.username, key, "whoami") == (0, f"{account.username}\n")

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/dashboard/")
    assert page.inner_text(f"#ssh-{grant.pk}") == command
    page.click(f"button[data-copy='ssh-{grant.pk}']")
    assert page.evaluate("navigator.clipboard.readText()") == command
    session = JupyterSession.objects.select_related("account").get(grant=grant, account__user=user)
    tunnel = page.inner_text(f"#tunnel-{grant.pk}")
    assert tunnel == f"ssh -N -L 8888:{session.socket_path} -p {node.ssh_port} {account.username}@{node.address}"
    with ssh_tunnel(node, account.username, key, session.socket_path, tmp_path) as port:
        assert http_status(port, session_token(session), "/lab") == 200
    return account


def replay_a_day_of_samples(grant: Grant, node, *, utilization: int) -> None:
    """A day later: the grant's access and GPU assignments are moved a day into the past, the
    node posts a day of per-minute samples, and the due usage hours are built."""
    day = timedelta(days=1)
    AccessInterval.objects.filter(grant=grant).update(opened_at=timezone.now() - day)
    for assignment in Assignment.objects.filter(grant=grant):
        period = assignment.period
        assignment.period = type(period)(period.lower - day, period.upper, period.bounds)
        assignment.save(update_fields=["period"])
    gpus = [a.gpu for a in Assignment.objects.filter(grant=grant).select_related("gpu").order_by("gpu__index")]
    start = (timezone.now() - day + timedelta(minutes=5)).timestamp()
    body = samples_every_minute(gpus, start, 24 * 60 - 10, utilization=utilization, power_w=300.0)
    assert post(Client(), node.hostname, node_samples_token_rotate(node=node), body).status_code == 201
    usage_hours_build_due()


def dashboard_shows_use(page, grant: Grant, utilization: str) -> None:
    """The dashboard's charts of the grant show the use: the mean utilisation, day bars, energy."""
    page.goto("/dashboard/")
    desc = page.text_content(f"#grant-{grant.pk}-util-7 desc")
    assert utilization in desc, desc
    assert page.locator(f"#grant-{grant.pk}-util-7 rect").count() >= 1  # the bars of the days with use
    energy = page.text_content(f"#grant-{grant.pk}-energy desc")
    assert energy.split(" kWh")[0] not in {"0", "0.00"}, energy


def checkout_completed(live_server, pack, event_id: str) -> None:
    """Stripe's stand-in confirms the Checkout session of `pack` as paid: a signed
    checkout.session.completed event posted to the portal's webhook."""
    obj = {
        "id": pack.checkout_session_id,
        "object": "checkout.session",
        "payment_status": "paid",
        "amount_total": pack.total_krw,
        "currency": "krw",
        "metadata": {"kind": "hour_pack", "hour_pack_id": str(pack.pk)},
    }
    body, sig = signed(event(event_id, "checkout.session.completed", obj))
    answer = requests.post(
        f"{live_server.url}/billing/stripe/webhook/",
        data=body,
        headers={"Stripe-Signature": sig, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 200


def invoice_pdf_text(page, invoice, tmp_path: Path) -> str:
    """Download the invoice's PDF as the signed-in user and return its text (pdftotext)."""
    pdf = page.request.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert pdf.headers["content-type"] == "application/pdf"
    path = tmp_path / "invoice.pdf"
    path.write_bytes(pdf.body())
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def previous_month(today: date) -> date:
    return (today.replace(day=1) - timedelta(days=1)).replace(day=1)
