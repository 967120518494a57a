from portal.eligibility import FAIL, PASS, no_overdue_invoice
from tests.portal.eligibility.facts import facts


def test_no_overdue_invoice_passes():
    assert no_overdue_invoice(facts()).outcome == PASS


def test_an_overdue_invoice_fails():
    assert no_overdue_invoice(facts(org_has_overdue_invoice=True)).outcome == FAIL
