from allauth.mfa.models import Authenticator
from django.conf import settings

from tests.totp import current_code


def test_repeated_failed_logins_are_rate_limited(client, user):
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": user.email, "password": "wrong"})
        assert response.status_code == 200
    response = client.post("/accounts/login/", {"login": user.email, "password": settings.DEMO_PASSWORD})
    assert response.status_code in (200, 429)
    assert not response.wsgi_request.user.is_authenticated  # even the right password waits


def test_any_user_can_turn_on_totp_and_gets_recovery_codes(client, user):
    client.post("/accounts/login/", {"login": user.email, "password": settings.DEMO_PASSWORD})
    client.post("/accounts/reauthenticate/", {"password": settings.DEMO_PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    code = current_code(secret)
    assert client.post("/accounts/2fa/totp/activate/", {"code": code}).status_code == 302
    types = set(Authenticator.objects.filter(user=user).values_list("type", flat=True))
    assert types == {"totp", "recovery_codes"}


def test_the_lockout_says_how_long_it_lasts_and_links_to_the_password_reset(client, user):
    for _ in range(5):
        client.post("/accounts/login/", {"login": user.email, "password": "wrong"})
    response = client.post(
        "/accounts/login/", {"login": user.email, "password": settings.DEMO_PASSWORD}, HTTP_ACCEPT_LANGUAGE="en"
    )
    body = response.content.decode()
    assert "locked for 5 minutes" in body
    assert 'href="/accounts/password/reset/"' in body
    korean = client.post(
        "/accounts/login/", {"login": user.email, "password": settings.DEMO_PASSWORD}, HTTP_ACCEPT_LANGUAGE="ko"
    ).content.decode()
    assert "5분" in korean
