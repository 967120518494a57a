"""Billing facts other apps ask about. Invoices arrive with the billing issue; these functions
are the interface the rest of the portal depends on until then."""


def organisation_has_overdue_invoice(organisation_id: int) -> bool:
    """True when the organisation has an invoice past its due date and unpaid. No invoices
    exist yet, so nobody is overdue."""
    return False


def organisation_unpaid_invoices(organisation_id: int) -> list:
    """Unpaid invoices shown to reviewers in the organisation's history (none until invoicing)."""
    return []
