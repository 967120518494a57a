from portal.eligibility import FAIL, PASS, WARN, business_registration_number
from tests.portal.eligibility.facts import STARTUP, facts


def test_a_company_with_a_valid_number_passes():
    assert business_registration_number(STARTUP).outcome == PASS


def test_a_company_with_a_wrong_check_digit_fails():
    assert business_registration_number(facts(STARTUP, org_business_registration_number="1208147522")).outcome == FAIL


def test_a_company_without_a_number_fails():
    assert business_registration_number(facts(STARTUP, org_business_registration_number=None)).outcome == FAIL


def test_universities_need_no_number():
    assert business_registration_number(facts()).code == "brn_not_required"


def test_a_number_not_yet_confirmed_by_the_centre_is_a_warning_for_reviewers():
    result = business_registration_number(facts(STARTUP, org_brn_verified=False))
    assert (result.outcome, result.code) == (WARN, "brn_unconfirmed")


def test_a_never_issued_number_that_passes_the_check_digit_fails():
    """0000000000 passes the check digit; the forms refuse it and so does eligibility."""
    for number in ["0000000000", "1230012342"]:
        result = business_registration_number(facts(STARTUP, org_business_registration_number=number))
        assert (result.outcome, result.code) == (FAIL, "brn_invalid"), number
