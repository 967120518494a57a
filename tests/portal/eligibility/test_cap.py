from portal.eligibility import FAIL, PASS, request_within_cap
from tests.portal.eligibility.facts import facts


def test_exactly_the_cap_passes():
    assert request_within_cap(facts(gpu_hours=20000)).outcome == PASS


def test_one_hour_over_the_cap_fails():
    result = request_within_cap(facts(gpu_hours=20001))
    assert (result.outcome, result.params) == (FAIL, {"hours": 20001, "cap": 20000})
