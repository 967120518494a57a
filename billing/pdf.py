"""Invoice PDFs, rendered with WeasyPrint from the stored invoice (never recomputed), in Korean
with a Korean font (fonts-nanum), carrying what a Korean business books: both business
registration numbers, supply value and VAT separately."""

from __future__ import annotations

from django.template.loader import render_to_string
from django.utils import translation

from billing.models import Invoice


def invoice_pdf(invoice: Invoice) -> bytes:
    from weasyprint import HTML  # heavy import (pango): only when a PDF is asked for

    with translation.override("ko"):
        html = render_to_string(
            "billing/invoice_pdf.html",
            {"invoice": invoice, "lines": invoice.lines.select_related("grant").order_by("position")},
        )
    return HTML(string=html).write_pdf()
