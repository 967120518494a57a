"""The chain in a real browser against the sshd node stand-in: an approver signs in with TOTP and
approves a submitted application in the admin; once the worker's jobs ran, the researcher's grant
page shows the ssh command for their account on the node, and that command logs in. The
dashboard offers the same command and the Jupyter tunnel to copy, JupyterLab answers through that
tunnel, and after a day of replayed samples the dashboard's charts show the use."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from allocations.models import AccessInterval, Assignment, Grant, JupyterSession, NodeAccount
from allocations.services.jupyter import session_token
from allocations.services.sample_tokens import node_samples_token_rotate
from allocations.services.usage import usage_hours_build_due
from portal.services import applications as svc
from tests.allocations.conftest import gpu_node, node_host, node_settings  # noqa: F401 - the sshd node fixtures
from tests.allocations.helpers import add_key, provision, ssh_as
from tests.allocations.jupyter_client import http_status, ssh_tunnel
from tests.allocations.metering_helpers import post, samples_every_minute
from tests.e2e.conftest import sign_in
from tests.factories import ApplicationFactory, CallFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

APPROVER_PERMS = ["view_application", "view_review", "add_review", "view_eligibilityresult", "decide_application"]


def test_an_approval_in_the_admin_ends_in_an_ssh_command_that_logs_in(page, gpu_node, tmp_path):  # noqa: F811
    app = ApplicationFactory(call=CallFactory(), gpu_count=2, gpu_hours=500, title="Weather foundation model")
    key = add_key(tmp_path, app.principal_investigator, "researcher")
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = UserFactory(email="approver@ministry.go.kr", is_staff=True)
    approver.user_permissions.add(*Permission.objects.filter(codename__in=APPROVER_PERMS))
    secret = generate_totp_secret()
    TOTP.activate(approver, secret)

    sign_in(page, approver.email, settings.DEMO_PASSWORD, secret)
    page.goto(f"/admin/portal/application/{app.pk}/change/")
    page.click("text=Start the review")
    page.click("text=Decide")
    page.check("input[name=action][value=approve]")
    today = timezone.localdate()
    page.fill("input[name=starts_on]", today.isoformat())
    page.fill("input[name=ends_on]", (today + timedelta(days=30)).isoformat())
    page.check("input[name=confirm_outside_window]")  # the call's window opens later
    page.fill("textarea[name=reason]", "Approved.")
    page.click("input[type=submit]")
    page.wait_for_url(f"**/admin/portal/application/{app.pk}/change/")
    grant = Grant.objects.get(application=app)

    grant = provision(grant)  # what the worker does after the approval
    assert grant.status == Grant.Status.ACTIVE, grant.status_reason
    account = NodeAccount.objects.get(user=app.principal_investigator, node=gpu_node)

    page.context.clear_cookies()
    sign_in(page, app.principal_investigator.email, settings.DEMO_PASSWORD)
    page.goto(f"/grants/{grant.pk}/")
    command = f"ssh -p {gpu_node.ssh_port} {account.username}@{gpu_node.address}"
    assert command in page.inner_text("main")
    assert page.inner_text("#grant-ssh") == command
    assert page.locator("button[data-copy='grant-ssh']").is_visible()  # shown once the script runs
    assert ssh_as(gpu_node, account.username, key, "whoami") == (0, f"{account.username}\n")

    # The dashboard: the same command, and the Jupyter tunnel, each with a working copy button.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/dashboard/")
    assert page.inner_text(f"#ssh-{grant.pk}") == command
    page.click(f"button[data-copy='ssh-{grant.pk}']")
    assert page.evaluate("navigator.clipboard.readText()") == command
    session = JupyterSession.objects.select_related("account").get(grant=grant, account__user=account.user)
    tunnel = page.inner_text(f"#tunnel-{grant.pk}")
    assert (
        tunnel == f"ssh -N -L 8888:{session.socket_path} -p {gpu_node.ssh_port} {account.username}@{gpu_node.address}"
    )
    with ssh_tunnel(gpu_node, account.username, key, session.socket_path, tmp_path) as port:
        assert http_status(port, session_token(session), "/lab") == 200

    # A day later: the grant was approved yesterday, and the node has reported a day of samples.
    day = timedelta(days=1)
    AccessInterval.objects.filter(grant=grant).update(opened_at=timezone.now() - day)
    for assignment in Assignment.objects.filter(grant=grant).select_related("gpu"):
        period = assignment.period
        assignment.period = type(period)(period.lower - day, period.upper, period.bounds)
        assignment.save(update_fields=["period"])
    gpus = [a.gpu for a in Assignment.objects.filter(grant=grant).select_related("gpu").order_by("gpu__index")]
    start = (timezone.now() - day + timedelta(minutes=5)).timestamp()
    body = samples_every_minute(gpus, start, 24 * 60 - 10, utilization=63, power_w=300.0)
    assert post(Client(), gpu_node.hostname, node_samples_token_rotate(node=gpu_node), body).status_code == 201
    usage_hours_build_due()
    page.goto("/dashboard/")
    desc = page.text_content(f"#grant-{grant.pk}-util-7 desc")
    assert "63.0%" in desc, desc
    assert page.locator(f"#grant-{grant.pk}-util-7 rect").count() >= 1  # the bars of the days with use
    energy = page.text_content(f"#grant-{grant.pk}-energy desc")
    assert energy.split(" kWh")[0] not in {"0", "0.00"}, energy
    assert page.csp_violations == []
