from django.utils import translation

from portal.eligibility import describe, evaluate
from tests.portal.eligibility.facts import BASE


def test_every_rule_of_an_eligible_request_passes():
    assert {r.outcome for r in evaluate(BASE)} == {"pass"}
    assert len(evaluate(BASE)) == 11


def test_reasons_read_in_the_users_language_with_formatted_numbers():
    params = {"hours": 25000, "cap": 20000}
    with translation.override("en"):
        assert describe("over_cap", params).startswith("25,000 GPU-hours is over the cap of 20,000")
    with translation.override("ko"):
        assert "상한" in describe("over_cap", params)
