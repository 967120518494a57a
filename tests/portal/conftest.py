"""An applicant of a university with a verified domain, an open call, and a client signed in as
the applicant in English: the applicant pages' tests share them."""

import pytest

from tests.factories import CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory


@pytest.fixture
def researcher(db):
    domain = OrganisationDomainFactory(domain="snu-demo.ac.kr")
    return MembershipFactory(user=UserFactory(email="kim@snu-demo.ac.kr"), organisation=domain.organisation)


@pytest.fixture
def call(db):
    return CallFactory()


@pytest.fixture
def browser(client, researcher):
    client.force_login(researcher.user)
    client.cookies["django_language"] = "en"
    return client
