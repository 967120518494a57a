"""Invoice and credit note PDFs, rendered with WeasyPrint from the stored invoice (never
recomputed) with a Korean font (fonts-nanum), carrying what a Korean business books: both
business registration numbers, supply value and VAT separately. One document serves every reader,
so it is bilingual: each label in Korean with its English beside or under it (`{% both %}`,
billing/templatetags/bilingual.py), amounts as ₩6,600 and dates as ISO 2026-11-30 whatever the
language active when it is rendered.

A finalised invoice's PDF is rendered once, by the invoicing run in the transaction that issues
it, and stored with its SHA-256 (`InvoiceDocument`); downloads serve those bytes. Nothing renders
an invoice that already has its document."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from billing.models import CreditNote, Invoice, InvoiceDocument


def invoice_pdf_html(invoice: Invoice) -> str:
    """The invoice's document as HTML, in both languages (what `invoice_pdf` prints)."""
    context = {
        "invoice": invoice,
        "lines": invoice.lines.select_related("grant").order_by("position"),
        # Earlier months carried forward (below the minimum card charge) that this invoice collects.
        "carried": invoice.carried_from.order_by("month", "pk"),
        "min_charge": settings.STRIPE_MIN_CHARGE_KRW,
        "bank_account": settings.BILLING_BANK_ACCOUNT,
    }
    with translation.override("ko"):
        return render_to_string("billing/invoice_pdf.html", context)


def invoice_pdf(invoice: Invoice) -> bytes:
    from weasyprint import HTML  # heavy import (pango): only when a PDF is rendered

    return HTML(string=invoice_pdf_html(invoice)).write_pdf()


def credit_note_pdf(note: CreditNote) -> bytes:
    """A credit note's PDF (rendered once, by `credit_note_issue`, and stored on the note)."""
    from weasyprint import HTML

    with translation.override("ko"):
        html = render_to_string("billing/credit_note_pdf.html", {"note": note, "invoice": note.invoice})
    return HTML(string=html).write_pdf()


@transaction.atomic
def invoice_document_store(*, invoice_id: int) -> InvoiceDocument:
    """The invoice's stored PDF, rendered now only if it has none yet (under the invoice's row
    lock, so two callers cannot both render)."""
    invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
    existing = InvoiceDocument.objects.filter(invoice=invoice).first()
    if existing is not None:
        return existing
    content = invoice_pdf(invoice)
    return InvoiceDocument.objects.create(invoice=invoice, content=content, sha256=hashlib.sha256(content).hexdigest())
