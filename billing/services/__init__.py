"""Billing services. Other apps ask `organisation_has_overdue_invoice` (eligibility) and
`organisation_unpaid_invoices` (the reviewers' history) through this package."""

from billing.services.invoices import organisation_has_overdue_invoice, organisation_unpaid_invoices

__all__ = ["organisation_has_overdue_invoice", "organisation_unpaid_invoices"]
