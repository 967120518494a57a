from portal.eligibility import FAIL, PASS, verified_email
from tests.portal.eligibility.facts import facts


def test_a_verified_address_passes():
    assert verified_email(facts()).outcome == PASS


def test_an_unverified_address_fails_naming_it():
    result = verified_email(facts(applicant_email_verified=False))
    assert result.outcome == FAIL
    assert result.params == {"email": "kim@snu-demo.ac.kr"}
