from billing.models.credit_notes import CreditNote, CreditNoteCounter
from billing.models.invoices import Invoice, InvoiceCounter, InvoiceDocument, InvoiceEvent, InvoiceLine
from billing.models.payments import BankTransfer, BillingAccount, HourPack, StripeEvent, SubsidyAlert
from billing.models.rates import Rate
from billing.models.runs import InvoicingRun

__all__ = [
    "BankTransfer",
    "BillingAccount",
    "CreditNote",
    "CreditNoteCounter",
    "HourPack",
    "Invoice",
    "InvoiceCounter",
    "InvoiceDocument",
    "InvoiceEvent",
    "InvoiceLine",
    "InvoicingRun",
    "Rate",
    "StripeEvent",
    "SubsidyAlert",
]
