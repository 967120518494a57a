import pytest

from tests.factories import MembershipFactory, OrganisationFactory


@pytest.fixture
def mine(user):
    return MembershipFactory(user=user).organisation


def test_members_see_their_organisation(user_client, mine):
    assert user_client.get(f"/organisations/{mine.pk}/").status_code == 200


def test_another_organisation_is_a_404(user_client, mine):
    other = OrganisationFactory()
    assert user_client.get(f"/organisations/{other.pk}/").status_code == 404
    assert user_client.post(f"/organisations/{other.pk}/invitations/", {"email": "a@b.kr"}).status_code == 404


def test_a_missing_organisation_is_also_a_404(user_client, mine):
    assert user_client.get("/organisations/999999/").status_code == 404


def test_the_list_shows_only_my_organisations(user_client, mine):
    other = OrganisationFactory(name_ko="남의기관")
    body = user_client.get("/organisations/").content.decode()
    assert mine.name_ko in body
    assert other.name_ko not in body


def test_anonymous_users_are_sent_to_log_in(client, mine):
    response = client.get(f"/organisations/{mine.pk}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
