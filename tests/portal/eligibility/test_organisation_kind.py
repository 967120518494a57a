from portal.eligibility import FAIL, PASS, organisation_kind_allowed
from tests.portal.eligibility.facts import facts


def test_a_kind_the_call_lists_passes():
    assert organisation_kind_allowed(facts(org_kind="research_institute")).outcome == PASS


def test_a_kind_the_call_does_not_list_fails():
    result = organisation_kind_allowed(facts(org_kind="enterprise"))
    assert (result.outcome, result.code) == (FAIL, "kind_not_allowed")
