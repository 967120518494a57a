"""The reasons the billing services store on an invoice's events, in English as they always were
(billing.services.invoices, .payments, .transfers, .credit_notes), shown to finance in their
language (`InvoiceEvent.reason_text`). A phrase changed in a service must change here too
(tests/billing/test_korean_admin.py shows what the services write)."""

from django.utils.translation import gettext_noop

from portal.stored_text import Phrases

INVOICE_REASONS = Phrases(
    gettext_noop("issued"),
    gettext_noop("issued; ₩%(due)s is below the minimum card charge ₩%(minimum)s: carried forward"),
    gettext_noop("issued; ₩%(due)s is above the maximum card charge: payable by bank transfer"),
    gettext_noop("bank transfer of ₩%(amount)s received %(date)s, recorded by %(email)s"),
    gettext_noop("charged off-session"),
    gettext_noop("payment succeeded"),
    gettext_noop("paid through Checkout (%(session)s)"),
    gettext_noop("paid with %(number)s"),
    gettext_noop("collected with %(number)s"),
    gettext_noop("%(number)s was voided: carried forward again"),
    gettext_noop("card payment refused for the amount (%(code)s): carried forward"),
    gettext_noop("card payment refused for the amount (%(code)s): payable by bank transfer until %(date)s"),
    gettext_noop("₩%(due)s is below the minimum card charge ₩%(minimum)s: carried forward"),
    gettext_noop("re-issued, replaces %(number)s: %(text)s"),
    gettext_noop("re-issued as %(number)s: %(text)s"),
    gettext_noop("written off with %(number)s: %(text)s"),
    gettext_noop("written off: %(text)s"),
    gettext_noop("void: %(text)s"),
    gettext_noop("payment failed: %(text)s"),
    gettext_noop("payment received after void, to refund: %(phrase)s"),
    gettext_noop("paid again, to refund: %(phrase)s"),
    gettext_noop("credit note %(number)s (₩%(amount)s): %(text)s"),
)
