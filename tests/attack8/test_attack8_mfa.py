"""Attack review of issue 8 (attack8): a staff session that has NOT passed the second factor
(e.g. begun before the app was added, the case the issue names) must not reach the admin with
the password alone."""

from __future__ import annotations

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings

from tests.factories import UserFactory
from tests.portal.test_staff_mfa import current_code

PASSWORD = settings.DEMO_PASSWORD


@pytest.mark.django_db(transaction=True)  # allauth announces a new app on commit
def test_a_session_without_the_factor_cannot_swap_the_authenticator_for_its_own(client):
    staff = UserFactory(email="late@ministry.go.kr", is_staff=True, is_superuser=True)
    client.post("/accounts/login/", {"login": staff.email, "password": PASSWORD})  # session of the attacker
    victim_secret = generate_totp_secret()
    TOTP.activate(staff, victim_secret)  # the real owner adds the app, from another browser
    assert client.get("/admin/").status_code == 302  # this session is asked for a code: good

    # The attacker knows only the password: re-authenticate with it, remove the victim's app...
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    client.post("/accounts/2fa/totp/deactivate/")
    removed = not Authenticator.objects.filter(user=staff, type="totp").exists()
    # ...and add their own, which records "mfa" for this session.
    page = client.get("/accounts/2fa/totp/activate/")
    if page.status_code == 302 and "reauthenticate" in page["Location"]:
        client.post("/accounts/reauthenticate/", {"password": PASSWORD})
        page = client.get("/accounts/2fa/totp/activate/")
    if page.status_code == 200:
        client.post("/accounts/2fa/totp/activate/", {"code": current_code(page.context["form"].secret)})
    admin = client.get("/admin/")
    admin_status = (admin.status_code, admin.get("Location"), page.status_code, page.get("Location"))
    assert not removed and admin_status[0] != 200, {"victim app removed": removed, "admin": admin_status}
