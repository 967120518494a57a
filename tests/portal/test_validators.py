import pytest

from portal.validators import business_registration_number_is_valid, normalise_business_registration_number


@pytest.mark.parametrize("number", ["1208147521", "2148612341", "1048100048", "2208162517"])
def test_valid_business_registration_numbers_pass(number):
    assert business_registration_number_is_valid(number)


@pytest.mark.parametrize(
    "number", ["1208147522", "1208147520", "2148612345", "120814752", "12081475211", "12081a7521", "", "0000000001"]
)
def test_wrong_check_digits_and_malformed_numbers_fail(number):
    assert not business_registration_number_is_valid(number)


def test_dashes_and_spaces_are_accepted_when_normalised():
    assert normalise_business_registration_number(" 120-81-47521 ") == "1208147521"
