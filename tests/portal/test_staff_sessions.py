"""Staff reach the admin only from a session that passed the second factor, however that
session began, also behind a path prefix; staff sessions end when idle and after a maximum."""

import re
import time

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings
from django.core import mail

from portal.middleware import SEEN_KEY, STARTED_KEY
from portal.services.organisations import invitation_token
from tests.factories import InvitationFactory, UserFactory
from tests.totp import current_code

PASSWORD = settings.DEMO_PASSWORD
NEW_PASSWORD = "a-new-staff-passphrase-2026"


@pytest.fixture
def staff(db):
    user = UserFactory(email="staff@ministry.go.kr", is_staff=True, is_superuser=True)
    user.totp_secret = generate_totp_secret()
    TOTP.activate(user, user.totp_secret)
    return user


def mailed_link(pattern: str) -> str:
    return re.search(pattern, mail.outbox[-1].body).group(1)


def begin_with_password(client, jobs, staff):
    return client.post("/accounts/login/", {"login": staff.email, "password": PASSWORD})


def begin_with_email_confirmation(client, jobs, staff):
    from allauth.account.models import EmailAddress

    EmailAddress.objects.filter(user=staff).update(verified=False)
    with jobs.committed():
        client.post("/accounts/login/", {"login": staff.email, "password": PASSWORD})
    jobs.run()
    link = mailed_link(r"https?://[^/\s]+(/accounts/confirm-email/\S+)")
    return client.post(link)


def begin_with_password_reset(client, jobs, staff):
    with jobs.committed():
        client.post("/accounts/password/reset/", {"email": staff.email})
    jobs.run()
    link = mailed_link(r"https?://[^/\s]+(/accounts/password/reset/key/\S+)")
    form = client.get(link)["Location"]
    client.post(form, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert client.get("/admin/").status_code == 302
    return client.post("/accounts/login/", {"login": staff.email, "password": NEW_PASSWORD})


def begin_with_an_invitation(client, jobs, staff):
    invitation = InvitationFactory(email=staff.email)
    link = f"/organisations/invitations/{invitation_token(invitation)}/"
    login = client.get(link)["Location"]
    assert login.startswith("/accounts/login/")
    return client.post(login, {"login": staff.email, "password": PASSWORD})


@pytest.mark.parametrize(
    "begin",
    [begin_with_password, begin_with_email_confirmation, begin_with_password_reset, begin_with_an_invitation],
)
def test_the_admin_is_refused_until_totp_was_entered_in_this_session(client, jobs, staff, begin):
    begin(client, jobs, staff)
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/portal/application/").status_code == 302
    response = client.get("/admin/")
    if client.session.get("_auth_user_id"):  # signed in, without the factor: asked for a code
        assert response["Location"].startswith("/accounts/2fa/reauthenticate/")
        client.post("/accounts/2fa/reauthenticate/", {"code": current_code(staff.totp_secret)})
    else:  # allauth's login stage asks for the code
        client.post("/accounts/2fa/authenticate/", {"code": current_code(staff.totp_secret)})
    assert client.get("/admin/").status_code == 200


def test_a_session_without_the_second_factor_is_asked_for_a_code(client, staff):
    client.force_login(staff, mfa=False)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/reauthenticate/")
    assert client.post("/accounts/2fa/reauthenticate/", {"code": "000000"}).status_code == 200
    assert client.get("/admin/").status_code == 302
    client.post("/accounts/2fa/reauthenticate/", {"code": current_code(staff.totp_secret)})
    assert client.get("/admin/").status_code == 200


def test_a_session_begun_before_the_app_was_added_is_asked_for_a_code(client, db):
    staff = UserFactory(email="late@ministry.go.kr", is_staff=True, is_superuser=True)
    client.post("/accounts/login/", {"login": staff.email, "password": PASSWORD})
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)  # e.g. from another browser
    assert client.get("/admin/").status_code == 302
    client.post("/accounts/2fa/reauthenticate/", {"code": current_code(secret)})
    assert client.get("/admin/").status_code == 200


def test_behind_a_path_prefix_the_admin_still_needs_the_second_factor(client, staff):
    client.force_login(staff, mfa=False)
    response = client.get("/admin/", SCRIPT_NAME="/portal")
    assert response.status_code == 302
    assert "/accounts/2fa/reauthenticate/" in response["Location"]
    no_app = UserFactory(email="noapp@ministry.go.kr", is_staff=True, is_superuser=True)
    client.force_login(no_app)
    response = client.get("/admin/", SCRIPT_NAME="/portal")
    assert response.status_code == 302
    assert "/accounts/2fa/totp/activate/" in response["Location"]


def age_session(client, *, idle: float = 0, since_login: float = 0) -> None:
    session = client.session
    session[SEEN_KEY] = time.time() - idle
    session[STARTED_KEY] = time.time() - since_login
    session.save()


def test_a_staff_session_ends_after_the_idle_time(client, staff, settings):
    settings.STAFF_SESSION_IDLE_MINUTES = 30
    client.force_login(staff)
    age_session(client, idle=29 * 60)
    assert client.get("/admin/").status_code == 200
    age_session(client, idle=31 * 60)
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_a_staff_session_ends_at_most_twelve_hours_after_login_even_when_busy(client, staff, settings):
    settings.STAFF_SESSION_MAX_HOURS = 12
    client.force_login(staff)
    age_session(client, since_login=11 * 3600)
    assert client.get("/admin/").status_code == 200
    age_session(client, since_login=12 * 3600 + 60)
    assert client.get("/admin/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_a_researcher_session_is_not_cut_by_the_staff_limits(client, user):
    client.force_login(user)
    age_session(client, idle=3 * 3600, since_login=24 * 3600)
    assert client.get("/dashboard/").status_code == 200
