from datetime import date

import pytest

from portal.eligibility import FAIL, PASS, dates_inside_window
from tests.portal.eligibility.facts import facts


def test_the_whole_window_passes():
    assert dates_inside_window(facts(starts_on=date(2027, 1, 1), ends_on=date(2027, 12, 31))).outcome == PASS


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2026, 12, 31), date(2027, 6, 1)),  # starts before the window
        (date(2027, 6, 1), date(2028, 1, 1)),  # ends after it
        (date(2027, 6, 1), date(2027, 5, 1)),  # reversed
        (None, date(2027, 5, 1)),
    ],
)
def test_dates_outside_the_window_or_reversed_fail(start, end):
    assert dates_inside_window(facts(starts_on=start, ends_on=end)).outcome == FAIL
