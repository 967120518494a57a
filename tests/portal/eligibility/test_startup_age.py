from datetime import date

from portal.eligibility import FAIL, PASS, startup_age
from tests.portal.eligibility.facts import STARTUP, facts


def test_a_young_startup_passes():
    assert startup_age(STARTUP).outcome == PASS


def test_the_last_day_of_the_seventh_year_still_passes():
    assert startup_age(facts(STARTUP, org_founded_on=date(2019, 11, 29))).outcome == PASS


def test_one_day_older_fails():
    result = startup_age(facts(STARTUP, org_founded_on=date(2019, 11, 28)))
    assert (result.outcome, result.code) == (FAIL, "too_old")


def test_a_startup_without_a_founding_date_fails():
    assert startup_age(facts(STARTUP, org_founded_on=None)).code == "founded_unknown"


def test_calls_without_an_age_limit_do_not_ask():
    assert startup_age(facts(STARTUP, call_max_startup_age_years=None)).outcome == PASS
