from portal.eligibility import FAIL, PASS, email_domain_matches
from tests.portal.eligibility.facts import STARTUP, facts


def test_an_address_on_a_verified_domain_of_the_university_passes():
    assert email_domain_matches(facts()).outcome == PASS


def test_another_domain_fails_for_an_academic_organisation():
    result = email_domain_matches(facts(applicant_email="kim@gmail.com"))
    assert result.outcome == FAIL
    assert result.code == "domain_mismatch"
    assert result.params["domain"] == "gmail.com"


def test_companies_are_not_held_to_a_domain():
    assert email_domain_matches(facts(STARTUP, applicant_email="ceo@gmail.com")).outcome == PASS
