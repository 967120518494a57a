"""Journey 1's start in a real browser: a university researcher signs up, follows the e-mailed
confirmation link, is thereby a member of the university (its verified domain), and adds an SSH
key that the keys page lists with its fingerprint; the dashboard names the organisation."""

import re
import subprocess

import pytest
from django.core import mail

from allocations.models import SshKey
from portal.models import Membership
from tests.factories import OrganisationDomainFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-enough-Passw0rd"


def test_a_researcher_signs_up_confirms_joins_by_domain_and_adds_a_key(page, jobs, tmp_path):
    OrganisationDomainFactory(domain="kaist-e2e.ac.kr", verified=True, organisation__name_en="KAIST E2E")
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", "park@kaist-e2e.ac.kr")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form[action='/accounts/signup/'] button[type=submit]")
    page.wait_for_url("**/accounts/confirm-email/")
    assert jobs.run() >= 1  # the confirmation mail is sent by a background job
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", mail.outbox[-1].body).group(1)
    page.goto(link)
    page.click("main form button[type=submit]")
    page.wait_for_url("**/dashboard/")
    membership = Membership.objects.get(user__email="park@kaist-e2e.ac.kr")
    assert membership.organisation.name_en == "KAIST E2E"
    assert "KAIST E2E · Member" in page.inner_text("main")

    key = tmp_path / "park_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "park", "-f", str(key)], check=True)
    page.goto("/keys/")
    page.fill("input[name=name]", "laptop")
    page.fill("textarea[name=public_key]", key.with_suffix(".pub").read_text())
    page.click("main form[method=post] button[type=submit]")
    page.wait_for_url("**/keys/")
    stored = SshKey.objects.get(user=membership.user)
    assert stored.fingerprint in page.inner_text("main")
    assert page.csp_violations == []
