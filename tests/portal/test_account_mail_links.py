"""Every link in allauth's mails (sign-up confirmation, password reset, an address already
registered, an unknown address) stands on a line of its own in Korean and English: a mail
client that links or a person who copies up to the next space gets exactly the URL, and that
URL opens (the Korean catalogue once glued "을 클릭하세요" to the confirmation link: a 404)."""

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail

from tests.factories import UserFactory

PASSWORD = "a-long-enough-Passw0rd"
URL = re.compile(r"https?://\S+")


def links(body: str) -> list[str]:
    """The URLs in a mail, each taken up to the next whitespace, after checking that each is
    the whole of its line (nothing glued before or after it)."""
    found = URL.findall(body)
    assert found, body
    lines = [line.strip() for line in body.splitlines()]
    for url in found:
        assert url in lines, f"{url!r} is not on a line of its own:\n{body}"
    return found


def opens(client, url: str) -> bool:
    return client.get(urlsplit(url).path).status_code in (200, 302)


def sign_up(client, jobs, email: str, language: str) -> None:
    client.cookies["django_language"] = language
    with jobs.committed():
        client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    jobs.run()
    client.logout()


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_sign_up_confirmation_link_is_on_its_own_line_and_opens(client, jobs, language):
    sign_up(client, jobs, f"{language}-new@snu-demo.ac.kr", language)

    (message,) = mail.outbox
    (link,) = links(message.body)
    assert "/accounts/confirm-email/" in link
    assert opens(client, link)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_password_reset_link_is_on_its_own_line_and_opens(client, jobs, language):
    user = UserFactory(email=f"{language}-reset@snu-demo.ac.kr")
    client.cookies["django_language"] = language
    with jobs.committed():
        client.post("/accounts/password/reset/", {"email": user.email})
    jobs.run()

    (message,) = mail.outbox
    (link,) = links(message.body)
    assert "/accounts/password/reset/key/" in link
    assert opens(client, link)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ko", "en"])
def test_signing_up_again_with_a_registered_address_mails_a_reset_link_on_its_own_line(client, jobs, language):
    UserFactory(email=f"{language}-taken@snu-demo.ac.kr")
    sign_up(client, jobs, f"{language}-taken@snu-demo.ac.kr", language)

    (message,) = mail.outbox
    (link,) = links(message.body)
    assert opens(client, link)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["ko", "en"])
def test_a_reset_for_an_unknown_address_mails_a_sign_up_link_on_its_own_line(client, jobs, language):
    client.cookies["django_language"] = language
    with jobs.committed():
        client.post("/accounts/password/reset/", {"email": f"{language}-nobody@snu-demo.ac.kr"})
    jobs.run()

    (message,) = mail.outbox
    (link,) = links(message.body)
    assert opens(client, link)
