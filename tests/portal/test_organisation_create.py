import pytest
from django.utils import timezone

from portal.models import InstitutionalDomain, Membership, Organisation, OrganisationDomain
from tests.factories import OrganisationDomainFactory, OrganisationFactory, UserFactory

URL = "/organisations/new/"


def startup_form(**overrides):
    data = {
        "kind": "startup",
        "name_ko": "딥러닝스타트업",
        "name_en": "Deep Learning Startup",
        "domains": "dl-startup.kr",
        "business_registration_number": "120-81-47521",
        "founded_on": "2023-05-01",
    }
    data.update(overrides)
    return data


@pytest.fixture
def en_client(user_client):
    user_client.cookies["django_language"] = "en"
    return user_client


def test_a_researcher_registers_a_university_and_becomes_owner(db, client):
    InstitutionalDomain.objects.create(domain="new-univ.ac.kr", institution="New University")
    user = UserFactory(email="prof@new-univ.ac.kr")
    client.force_login(user)
    response = client.post(
        URL,
        {
            "kind": "university",
            "name_ko": "신규대학교",
            "name_en": "New University",
            "domains": "new-univ.ac.kr, lab.kr",
        },
    )
    org = Organisation.objects.get(name_en="New University")
    assert response.status_code == 302
    assert response["Location"] == f"/organisations/{org.pk}/"
    assert Membership.objects.get(organisation=org).role == Membership.Role.OWNER
    # Even a listed institutional domain waits for an operator: only they know this organisation
    # is the institution (and not a student's club on its domain).
    assert dict(OrganisationDomain.objects.filter(organisation=org).values_list("domain", "verified")) == {
        "new-univ.ac.kr": False,
        "lab.kr": False,
    }
    assert org.price_tier == "academic"


def test_a_startup_registers_with_a_valid_number(en_client):
    response = en_client.post(URL, startup_form())
    org = Organisation.objects.get()
    assert response.status_code == 302
    assert org.business_registration_number == "1208147521"
    assert org.price_tier == "startup"


def test_a_wrong_check_digit_is_refused_and_the_form_keeps_what_was_typed(en_client):
    response = en_client.post(URL, startup_form(business_registration_number="120-81-47522"))
    body = response.content.decode()
    assert response.status_code == 200
    assert "check digit does not match" in body
    assert 'value="딥러닝스타트업"' in body
    assert 'value="120-81-47522"' in body
    assert not Organisation.objects.exists()


def test_the_error_is_in_korean_for_a_korean_user(user_client):
    response = user_client.post(URL, startup_form(business_registration_number="1208147522"))
    assert "확인 숫자" in response.content.decode()


def test_a_number_confirmed_for_another_organisation_is_refused(en_client):
    OrganisationFactory(
        kind="startup", business_registration_number="1208147521", brn_status="verified", founded_on="2020-01-01"
    )
    response = en_client.post(URL, startup_form(name_en="Copycat"))
    assert "already registered and confirmed" in response.content.decode()
    assert Organisation.objects.count() == 1


def test_companies_must_give_a_number_and_startups_a_founding_date(en_client):
    response = en_client.post(URL, startup_form(business_registration_number="", founded_on=""))
    body = response.content.decode()
    assert "must give their business registration number" in body
    assert "must give their founding date" in body
    assert not Organisation.objects.exists()


def test_a_founding_date_in_the_future_is_refused(en_client):
    tomorrow = timezone.localdate() + timezone.timedelta(days=1)
    response = en_client.post(URL, startup_form(founded_on=tomorrow.isoformat()))
    assert "cannot be in the future" in response.content.decode()


def test_unknown_kinds_overlong_names_and_bad_domains_get_clear_errors(en_client):
    response = en_client.post(
        URL, {"kind": "pirate_ship", "name_ko": "가" * 201, "name_en": "ok", "domains": "not a domain!"}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice" in body
    assert "at most 200 characters" in body
    assert "is not an e-mail domain" in body
    assert not Organisation.objects.exists()


def test_html_in_names_is_shown_escaped(en_client):
    en_client.post(
        URL, {"kind": "university", "name_ko": "<b>대학</b>", "name_en": "<script>x()</script>", "domains": "x.ac.kr"}
    )
    org = Organisation.objects.get()
    body = en_client.get(f"/organisations/{org.pk}/").content.decode()
    assert "<script>x()</script>" not in body
    assert "&lt;script&gt;x()&lt;/script&gt;" in body


def test_a_domain_verified_for_another_organisation_cannot_be_claimed(en_client):
    OrganisationDomainFactory(domain="taken.ac.kr", verified=True)
    response = en_client.post(URL, {"kind": "university", "name_ko": "대학", "name_en": "U", "domains": "taken.ac.kr"})
    assert "already belongs to another organisation" in response.content.decode()
    assert Organisation.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
