from portal.eligibility import FAIL, PASS, gpu_model_offered
from tests.portal.eligibility.facts import facts


def test_a_model_with_a_budget_passes():
    assert gpu_model_offered(facts()).outcome == PASS


def test_a_model_the_call_does_not_offer_fails():
    assert gpu_model_offered(facts(gpu_model="B200-180GB")).outcome == FAIL
