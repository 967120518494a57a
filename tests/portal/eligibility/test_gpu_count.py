from portal.eligibility import FAIL, PASS, gpu_count_fits_node
from tests.portal.eligibility.facts import facts


def test_a_whole_node_fits():
    assert gpu_count_fits_node(facts(gpu_count=8)).outcome == PASS


def test_more_gpus_than_a_node_has_fail():
    result = gpu_count_fits_node(facts(gpu_count=9))
    assert (result.outcome, result.params["per_node"]) == (FAIL, 8)


def test_zero_gpus_fail():
    assert gpu_count_fits_node(facts(gpu_count=0)).outcome == FAIL
