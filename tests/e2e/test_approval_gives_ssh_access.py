"""The chain in a real browser against the sshd node stand-in: an approver signs in with TOTP and
approves a submitted application in the admin; once the worker's jobs ran, the researcher's grant
page shows the ssh command for their account on the node, and that command logs in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.contrib.auth.models import Permission
from django.utils import timezone

from allocations.models import Grant, NodeAccount
from portal.services import applications as svc
from tests.allocations.conftest import gpu_node, node_host, node_settings  # noqa: F401 - the sshd node fixtures
from tests.allocations.helpers import add_key, provision, ssh_as
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
    assert ssh_as(gpu_node, account.username, key, "whoami") == (0, f"{account.username}\n")
    assert page.csp_violations == []
