from portal.eligibility import PASS, WARN, request_within_budget
from tests.portal.eligibility.facts import facts


def test_a_request_inside_the_remaining_budget_passes():
    assert request_within_budget(facts(gpu_hours=50000)).outcome == PASS


def test_a_request_over_the_remaining_budget_only_warns():
    result = request_within_budget(facts(gpu_hours=50001))
    assert (result.outcome, result.params["remaining"]) == (WARN, 50000)
