"""Billing pages: the public rate card; invoices, hour packs and payments for the owners and
billing members of an organisation (as they are now; anyone else gets 404)."""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from allocations.gpu_models import gpu_model_labels
from billing import ledger, stripe_client
from billing.forms import HourPackForm
from billing.models import BillingAccount, CreditNote, HourPack, Invoice, InvoiceDocument, Rate
from billing.pdf import invoice_document_store
from billing.services import payments
from billing.services.statements import organisation_statement
from portal.errors import PortalError
from portal.models import Membership, Organisation

log = logging.getLogger(__name__)
PAYER_ROLES = [Membership.Role.OWNER, Membership.Role.BILLING]
PAYMENTS_NOT_CONFIGURED = gettext_lazy(
    "Payments are not configured in this installation (no Stripe key): nothing was sent to a payment service."
)


def rate_card(request: HttpRequest) -> HttpResponse:
    """The published rate card: today's KRW per GPU-hour by GPU model and price tier, and
    changes already scheduled."""
    current = {(r.gpu_model_id, r.price_tier): r for r in Rate.objects.in_effect()}
    tiers = Organisation.PriceTier.choices
    rows = [
        (label, [current.get((value, tier)) for tier, _label in tiers])
        for value, label in gpu_model_labels().items()
        if any((value, tier) in current for tier, _l in tiers)
    ]
    return render(
        request,
        "billing/rates.html",
        {"tiers": tiers, "rows": rows, "scheduled": Rate.objects.scheduled()},
    )


def payer_organisations(user):
    """Organisations where the user is an owner or a billing member now."""
    mine = Membership.objects.filter(organisation=OuterRef("pk"), user=user, role__in=PAYER_ROLES)
    return Organisation.objects.filter(Exists(mine)).order_by("name_en")


def _organisation(request: HttpRequest) -> tuple[Organisation, list[Organisation]]:
    orgs = list(payer_organisations(request.user))
    if not orgs:
        raise Http404
    wanted = request.GET.get("organisation") or request.POST.get("organisation")
    if wanted:
        chosen = next((o for o in orgs if str(o.pk) == wanted), None)
        if chosen is None:
            raise Http404
        return chosen, orgs
    return orgs[0], orgs


def get_invoice_for_user(user, pk: int) -> Invoice:
    return get_object_or_404(Invoice.objects.filter(organisation__in=payer_organisations(user)), pk=pk)


def month_so_far(organisation: Organisation) -> dict:
    """This month's charges up to now at the published rates, and the VAT on them."""
    now = timezone.now()
    start, _end = ledger.month_bounds(timezone.localdate())
    try:
        result = organisation_statement(organisation=organisation, start=start, end=now)
    except ledger.LedgerError as exc:
        # The page says the centre has been told: this error is how (the operators' log).
        log.error("this month so far of organisation %s cannot be priced: %s", organisation.pk, exc)
        return {"error": True}
    supply = result.supply_krw
    vat = ledger.vat_of(supply, settings.VAT_PERCENT)
    return {"lines": result.lines, "supply": supply, "vat": vat, "total": supply + vat}


@login_required
def invoice_list(request: HttpRequest) -> HttpResponse:
    organisation, orgs = _organisation(request)
    # A re-issued month lists its live invoice above the void one it replaces (newest first).
    invoices = (
        Invoice.objects.filter(organisation=organisation)
        .select_related("replaces", "carried_into")
        .order_by("-month", "-pk")
    )
    page = Paginator(invoices, 24).get_page(request.GET.get("page"))
    account = BillingAccount.objects.filter(organisation=organisation).first()
    return render(
        request,
        "billing/invoice_list.html",
        {
            "organisation": organisation,
            "organisations": orgs,
            "page": page,
            "account": account,
            "so_far": month_so_far(organisation),
            "credit_notes": CreditNote.objects.filter(invoice__organisation=organisation)
            .select_related("invoice")
            .defer("document")
            .order_by("-created_at")[:24],
            "today": timezone.localdate(),
            "bank_account": settings.BILLING_BANK_ACCOUNT,
            "min_charge": settings.STRIPE_MIN_CHARGE_KRW,
        },
    )


@login_required
def invoice_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """The document stored when the invoice was finalised, byte for byte (an invoice issued
    before documents were stored gets its document frozen on this first download), for the
    organisation's owners and billing members as they are now, and for staff allowed to see
    invoices (finance, from the invoice's admin page); anyone else gets 404."""
    if request.user.has_perm("billing.view_invoice"):
        invoice = get_object_or_404(Invoice, pk=pk)
    else:
        invoice = get_invoice_for_user(request.user, pk)
    document = InvoiceDocument.objects.filter(invoice=invoice).first() or invoice_document_store(invoice_id=invoice.pk)
    content = bytes(document.content)
    if hashlib.sha256(content).hexdigest() != document.sha256:
        raise RuntimeError(f"the stored document of invoice {invoice.pk} does not match its SHA-256")
    response = HttpResponse(content, content_type="application/pdf")
    name = invoice.number or f"statement-{invoice.month:%Y-%m}"
    response["Content-Disposition"] = f'inline; filename="{name}.pdf"'
    response["ETag"] = f'"{document.sha256}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
def credit_note_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """The credit note's document stored at issue, for the organisation's owners and billing
    members as they are now, and for staff allowed to see credit notes; anyone else gets 404."""
    notes = CreditNote.objects.all()
    if not request.user.has_perm("billing.view_creditnote"):
        notes = notes.filter(invoice__organisation__in=payer_organisations(request.user))
    note = get_object_or_404(notes, pk=pk)
    content = bytes(note.document)
    if hashlib.sha256(content).hexdigest() != note.document_sha256:
        raise RuntimeError(f"the stored document of credit note {note.pk} does not match its SHA-256")
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{note.number}.pdf"'
    response["ETag"] = f'"{note.document_sha256}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _back(request: HttpRequest, name: str, organisation: Organisation) -> str:
    return request.build_absolute_uri(reverse(name)) + f"?organisation={organisation.pk}"


def _not_configured(request: HttpRequest, back: str) -> HttpResponse | None:
    """No Stripe key (a development install, `make run`): say that payments are not configured
    here, on the page we came from, instead of calling Stripe without a key and waiting for its
    retries. None when payments are configured."""
    if stripe_client.is_configured():
        return None
    messages.error(request, str(PAYMENTS_NOT_CONFIGURED))
    return redirect(back)


def _refused(request: HttpRequest, exc: PortalError, back: str) -> HttpResponse:
    """Stripe unreachable (or slower than STRIPE_CHECKOUT_TIMEOUT_SECONDS): a page that says so,
    with the way back, answered 503. Anything else, a request Stripe answered and refused among
    them ("stripe_refused": the payment could not be started, what to do): the message on the
    page we came from."""
    if exc.code == "stripe":
        return render(request, "billing/payment_unavailable.html", {"back": back}, status=503)
    messages.error(request, exc.message)
    return redirect(back)


@login_required
@require_POST
def invoice_pay(request: HttpRequest, pk: int) -> HttpResponse:
    invoice = get_invoice_for_user(request.user, pk)
    back = _back(request, "billing:invoice_list", invoice.organisation)
    if off := _not_configured(request, back):
        return off
    try:
        url = payments.invoice_checkout_start(invoice=invoice, user=request.user, success_url=back, cancel_url=back)
    except PortalError as exc:
        return _refused(request, exc, back)
    return redirect(url)


@login_required
@require_POST
def card_setup(request: HttpRequest) -> HttpResponse:
    organisation, _orgs = _organisation(request)
    back = _back(request, "billing:invoice_list", organisation)
    if off := _not_configured(request, back):
        return off
    try:
        url = payments.card_checkout_start(
            organisation=organisation, user=request.user, success_url=back, cancel_url=back
        )
    except PortalError as exc:
        return _refused(request, exc, back)
    return redirect(url)


@login_required
def hour_packs(request: HttpRequest) -> HttpResponse:
    organisation, orgs = _organisation(request)
    rates = list(Rate.objects.in_effect().filter(price_tier=organisation.price_tier))
    form = HourPackForm(request.POST or None, rates=rates)
    status = 200
    if request.method == "POST" and not stripe_client.is_configured():
        form.is_valid()  # the form keeps what was typed
        form.add_error(None, str(PAYMENTS_NOT_CONFIGURED))
        status = 503
    elif request.method == "POST" and form.can_buy and form.is_valid():
        back = _back(request, "billing:hour_packs", organisation)
        try:
            _pack, url = payments.hour_pack_checkout_start(
                organisation=organisation,
                user=request.user,
                gpu_model=form.cleaned_data["gpu_model"],
                gpu_hours=form.cleaned_data["gpu_hours"],
                success_url=back,
                cancel_url=back,
            )
        except PortalError as exc:
            form.add_error(None, exc.message)  # the form keeps what was typed
            status = 503 if exc.code == "stripe" else 400
        else:
            return redirect(url)
    packs = Paginator(HourPack.objects.filter(organisation=organisation), 24).get_page(request.GET.get("page"))
    return render(
        request,
        "billing/hour_packs.html",
        {"organisation": organisation, "organisations": orgs, "form": form, "rates": rates, "page": packs},
        status=status,
    )
