import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from portal.models import Membership, User
from tests.factories import OrganisationDomainFactory

PASSWORD = "a-long-enough-Passw0rd"


def sign_up(client, jobs, email):
    with jobs.committed():
        response = client.post(
            "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}, follow=True
        )
    return response


def confirmation_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+)", message.body).group(1)


@pytest.mark.django_db
def test_sign_up_sends_the_verification_mail_from_a_background_job(client, jobs):
    sign_up(client, jobs, "kim@snu-demo.ac.kr")

    assert mail.outbox == []  # nothing is sent inside the request
    assert jobs.run() == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["kim@snu-demo.ac.kr"]
    assert "/accounts/confirm-email/" in mail.outbox[0].body


@pytest.mark.django_db
def test_unverified_user_cannot_log_in_until_the_link_is_followed(client, jobs):
    sign_up(client, jobs, "lee@snu-demo.ac.kr")
    jobs.run()
    client.logout()

    response = client.post("/accounts/login/", {"login": "lee@snu-demo.ac.kr", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/accounts/confirm-email/"
    assert not response.wsgi_request.user.is_authenticated

    link = confirmation_link(mail.outbox[-1])
    assert client.get(link).status_code == 200
    response = client.post(link, follow=True)
    assert response.wsgi_request.user.is_authenticated
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert EmailAddress.objects.get(email="lee@snu-demo.ac.kr").verified

    client.logout()
    response = client.post("/accounts/login/", {"login": "lee@snu-demo.ac.kr", "password": PASSWORD}, follow=True)
    assert response.wsgi_request.user.is_authenticated


@pytest.mark.django_db
def test_confirming_an_address_on_a_university_domain_joins_the_university(client, jobs):
    domain = OrganisationDomainFactory(domain="kaist-demo.ac.kr", verified=True)
    OrganisationDomainFactory(domain="unverified-demo.ac.kr", verified=False)
    sign_up(client, jobs, "park@kaist-demo.ac.kr")
    jobs.run()
    user = User.objects.get(email="park@kaist-demo.ac.kr")
    assert not Membership.objects.filter(user=user).exists()  # not before verification

    client.post(confirmation_link(mail.outbox[-1]))

    membership = Membership.objects.get(user=user)
    assert membership.organisation == domain.organisation
    assert membership.role == Membership.Role.MEMBER
    response = client.get("/dashboard/")
    assert domain.organisation.name_ko in response.content.decode()


@pytest.mark.django_db
def test_sign_up_form_keeps_the_address_and_explains_a_bad_password(client, jobs):
    response = client.post(
        "/accounts/signup/",
        {"email": "choi@snu-demo.ac.kr", "password1": "short", "password2": "short"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert 'value="choi@snu-demo.ac.kr"' in body
    assert "too short" in body
    assert not User.objects.filter(email="choi@snu-demo.ac.kr").exists()


@pytest.mark.django_db
def test_password_reset_mail_goes_out_through_the_job(client, jobs, user):
    with jobs.committed():
        client.post("/accounts/password/reset/", {"email": user.email})
    assert mail.outbox == []
    jobs.run()
    assert [m.to for m in mail.outbox] == [[user.email]]
    assert "/accounts/password/reset/key/" in mail.outbox[0].body


@pytest.mark.django_db
def test_the_confirmation_mail_names_the_portal_in_the_language_the_person_signed_up_in(client, jobs):
    client.cookies["django_language"] = "ko"
    sign_up(client, jobs, "choi@snu-demo.ac.kr")
    client.cookies["django_language"] = "en"
    sign_up(client, jobs, "han@snu-demo.ac.kr")
    jobs.run()

    korean, english = mail.outbox
    assert korean.subject.startswith("[GPU 포털] ")
    assert "GPU 포털" in korean.body
    assert english.subject.startswith("[GPU Portal] ")
    assert "Hello from GPU Portal!" in english.body  # not the host name the request came in on
