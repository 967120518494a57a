import re

from django.utils import translation

from portal.eligibility import MESSAGES, REVIEWER, REVIEWER_MESSAGES, describe, evaluate
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


def test_no_reason_addresses_a_reviewer_as_the_applicant():
    """Every stored code reads in the third person for reviewers, and their wording needs no
    parameter the applicant's did not: every row ever stored renders for either reader."""
    params = {"email": "kim@snu.ac.kr", "domain": "snu.ac.kr", "domains": "snu.ac.kr", "kind": "startup"}
    params |= {"years": 7, "model": "H100", "hours": 10, "cap": 20, "remaining": 5, "count": 2, "per_node": 8}
    params |= {"founded": "2026-01-01", "window_start": "2026-01-01", "window_end": "2026-02-01"}
    with translation.override("en"):
        for code, reviewer in REVIEWER_MESSAGES.items():
            needs = set(re.findall(r"%\((\w+)\)s", str(reviewer)))
            assert needs <= set(re.findall(r"%\((\w+)\)s", str(MESSAGES[code]))), code
        for code in MESSAGES:
            text = describe(code, params, reader=REVIEWER)
            assert not re.search(r"\byour?\b", text, re.IGNORECASE), (code, text)


def test_an_unknown_stored_code_is_shown_as_itself_to_both_readers():
    assert describe("retired_rule", {}) == describe("retired_rule", {}, reader=REVIEWER) == "retired_rule"
