import pytest
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, generate_totp_secret, hotp_value
from django.conf import settings

from tests.factories import UserFactory


def current_code(secret: str) -> str:
    import time

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


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
