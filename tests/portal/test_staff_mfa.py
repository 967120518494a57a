import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.conf import settings

from tests.factories import UserFactory
from tests.totp import current_code


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@demo-centre.kr", is_staff=True, is_superuser=True)


def test_anonymous_admin_visit_goes_to_the_portal_login(client, db):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    response = client.get(response["Location"])
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_staff_without_mfa_is_sent_to_set_it_up_before_any_admin_page(client, staff):
    client.force_login(staff)
    for path in ["/admin/", "/admin/portal/organisation/", "/admin/auth/group/"]:
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/2fa/totp/activate/")


@pytest.mark.django_db(transaction=True)  # allauth announces the new app on commit, inside the request
def test_staff_sets_up_totp_then_reaches_the_admin(client, staff):
    client.post("/accounts/login/", {"login": staff.email, "password": settings.DEMO_PASSWORD})
    redirect = client.get("/admin/")["Location"]
    reauth = client.get(redirect)  # allauth asks for the password again before adding a factor
    assert reauth["Location"].startswith("/accounts/reauthenticate/")
    client.post(reauth["Location"], {"password": settings.DEMO_PASSWORD})
    page = client.get(redirect)
    assert page.status_code == 200
    secret = page.context["form"].secret
    response = client.post(redirect, {"code": current_code(secret)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_staff_login_asks_for_the_authenticator_code(client, staff):
    secret = generate_totp_secret()
    TOTP.activate(staff, secret)
    response = client.post("/accounts/login/", {"login": staff.email, "password": settings.DEMO_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert client.get("/admin/").status_code == 302  # not logged in yet

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200
    assert client.get("/admin/").status_code == 302

    client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert client.get("/admin/").status_code == 200


def test_non_staff_user_is_refused_by_the_admin(client, user):
    client.force_login(user)
    assert client.get("/admin/").status_code in (302, 403)
    assert client.get("/admin/portal/organisation/").status_code in (302, 403)


@pytest.mark.django_db(transaction=True)  # allauth announces a new app on commit
def test_a_session_that_skipped_the_factor_cannot_swap_the_owners_app_for_its_own(client):
    """A session begun with the password before the owner added the app (attack review of issue
    8): re-authenticating with the password, removing the owner's app and adding its own would
    open the admin. Every page that changes the factors asks this session for a code instead."""
    from allauth.mfa.models import Authenticator

    password = settings.DEMO_PASSWORD
    staff = UserFactory(email="late@ministry.go.kr", is_staff=True, is_superuser=True)
    client.post("/accounts/login/", {"login": staff.email, "password": password})  # the attacker's session
    TOTP.activate(staff, generate_totp_secret())  # the owner adds the app, from another browser
    assert client.get("/admin/").status_code == 302

    for method, path in [
        ("post", "/accounts/reauthenticate/"),
        ("get", "/accounts/reauthenticate/"),
        ("post", "/accounts/2fa/totp/deactivate/"),
        ("get", "/accounts/2fa/totp/activate/"),
        ("get", "/accounts/2fa/recovery-codes/generate/"),
        ("get", "/accounts/2fa/"),
    ]:
        response = getattr(client, method)(path, {"password": password} if method == "post" else None)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/2fa/reauthenticate/"), path
    assert Authenticator.objects.filter(user=staff, type="totp").exists()
    assert client.get("/accounts/2fa/reauthenticate/").status_code == 200  # the way forward: a code
    assert client.get("/admin/").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_adding_an_app_after_another_factor_exists_does_not_pass_the_factor_for_this_session(client):
    """The second lock, in the authenticator_added receiver: an app added by a session that
    never passed the account's existing factor does not count as passing it."""
    from allauth.mfa.models import Authenticator
    from django.test import RequestFactory

    from portal.middleware import session_passed_mfa
    from portal.signals import _adding_an_app_passes_mfa

    staff = UserFactory(email="second@ministry.go.kr", is_staff=True, is_superuser=True)
    client.post("/accounts/login/", {"login": staff.email, "password": settings.DEMO_PASSWORD})
    first = TOTP.activate(staff, generate_totp_secret()).instance
    request = RequestFactory().get("/")
    request.session = client.session
    request.user = staff
    later = Authenticator.objects.create(user=staff, type=Authenticator.Type.RECOVERY_CODES, data={})
    _adding_an_app_passes_mfa(sender=None, request=request, user=staff, authenticator=later)
    assert not session_passed_mfa(request)
    Authenticator.objects.exclude(pk=first.pk).delete()
    first.delete()
    only = TOTP.activate(staff, generate_totp_secret()).instance
    _adding_an_app_passes_mfa(sender=None, request=request, user=staff, authenticator=only)
    assert session_passed_mfa(request)


def test_staff_without_this_sessions_second_factor_are_not_served_the_admin_behind_a_prefix(client, db):
    from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

    staff = staff_user("ops@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(staff, mfa=False)
    for path in ["/admin/", "/admin/portal/application/"]:
        response = client.get(path, SCRIPT_NAME="/portal")
        assert response.status_code == 302 and "reauthenticate" in response["Location"]
    response = client.get("/admin/")
    assert response.status_code == 302
