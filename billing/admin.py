"""Finance's workplace: rates, and invoices with their actions (void, credit note, re-issue, bank
transfer, write-off) and the CSV export. The read-only billing records are in `admin_records`,
registered by the import at the bottom of this module."""

import csv

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.admin_gpu_models import GpuModelListFilter, OfferedGpuModelsMixin
from billing import ledger
from billing.admin_display import billing_month, money_display, won
from billing.models import BankTransfer, Invoice, InvoiceEvent, InvoiceLine, Rate
from billing.services.credit_notes import credit_note_check, credit_note_issue
from billing.services.invoices import (
    carried_waiting,
    invoice_reissue,
    invoice_reissue_check,
    invoice_void,
    invoice_void_check,
    month_statement,
)
from billing.services.transfers import (
    bank_transfer_check,
    bank_transfer_record,
    invoice_write_off,
    invoice_write_off_check,
)
from portal.admin_numbers import grouped_field
from portal.admin_scale import ReadOnlyInline
from portal.errors import PortalError


class RateForm(forms.ModelForm):
    """A rate may take effect on a date already begun only where no rate of its GPU model and
    tier was in effect then (a missing rate, published so the month can be invoiced): otherwise
    it would re-price time already used and shown ("this month so far") at another rate."""

    class Meta:
        model = Rate
        fields = ["gpu_model", "price_tier", "krw_per_gpu_hour", "effective_from"]

    def clean(self) -> dict:
        data = super().clean()
        model, tier, since = data.get("gpu_model"), data.get("price_tier"), data.get("effective_from")
        if model and tier and since and since <= timezone.localdate():
            earlier = Rate.objects.filter(gpu_model=model, price_tier=tier, effective_from__lte=since)
            if earlier.exclude(pk=self.instance.pk).exists():
                self.add_error(
                    "effective_from",
                    _(
                        "A rate in effect on that date has already priced the time used since: "
                        "publish the new rate from tomorrow or later."
                    ),
                )
        return data


@admin.register(Rate)
class RateAdmin(OfferedGpuModelsMixin, admin.ModelAdmin):
    form = RateForm
    list_display = ["gpu_model", "price_tier", "krw_per_gpu_hour_shown", "effective_from", "created_by"]
    list_filter = [GpuModelListFilter, "price_tier"]
    date_hierarchy = "effective_from"
    readonly_fields = ["created_at", "created_by"]
    krw_per_gpu_hour_shown = grouped_field(Rate, "krw_per_gpu_hour")

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # A rate already in effect has priced usage: changing it would rewrite bills.
        if obj is not None and obj.effective_from <= timezone.localdate():
            return ["gpu_model", "price_tier", "krw_per_gpu_hour", "effective_from", "created_at", "created_by"]
        return super().get_readonly_fields(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.effective_from <= timezone.localdate():
            return False
        return super().has_delete_permission(request, obj)


# Invoice money fields → the InvoiceAdmin display that shows them with thousands separators.
INVOICE_MONEY = {"supply_krw": "supply", "vat_krw": "vat", "total_krw": "total", "carried_krw": "carried"}


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = [
        "grant",
        "kind",
        "gpu_model",
        "period_start",
        "period_end",
        "gpu_minutes_shown",
        "krw_per_gpu_hour_shown",
        "percent",
        "amount_krw_shown",
    ]
    readonly_fields = fields
    gpu_minutes_shown = grouped_field(InvoiceLine, "gpu_minutes")
    krw_per_gpu_hour_shown = grouped_field(InvoiceLine, "krw_per_gpu_hour")
    amount_krw_shown = grouped_field(InvoiceLine, "amount_krw")


class InvoiceEventInline(ReadOnlyInline):
    """The reasons the billing services wrote read in the reader's language (`billing.reasons`)."""

    model = InvoiceEvent
    fields = ["created_at", "actor", "old_status", "new_status", "reason_text"]
    readonly_fields = fields

    @admin.display(description=InvoiceEvent._meta.get_field("reason").verbose_name)
    def reason_text(self, obj: InvoiceEvent) -> str:
        return obj.reason_text


class BankTransferInline(ReadOnlyInline):
    model = BankTransfer
    fields = ["received_on", "amount_krw_shown", "reference", "recorded_by", "created_at"]
    readonly_fields = fields
    amount_krw_shown = grouped_field(BankTransfer, "amount_krw")


class TransferForm(forms.Form):
    amount_krw = forms.IntegerField(label=_("Amount received (KRW)"), min_value=1)
    received_on = forms.DateField(label=_("Received on"), help_text="YYYY-MM-DD")
    reference = forms.CharField(
        label=_("Bank reference"), max_length=100, help_text=_("As on the bank statement; recorded once per invoice.")
    )


class ReasonForm(forms.Form):
    """Voiding an invoice, re-issuing its month, writing a carried amount off: a reason, kept in
    the invoice's events."""

    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class CreditForm(forms.Form):
    supply_krw = forms.IntegerField(
        label=_("Supply value to credit (KRW)"),
        min_value=1,
        required=False,
        help_text=_("Empty: all of the invoice not yet credited. VAT is added at the invoice's percent."),
    )
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


class CollectionFilter(admin.SimpleListFilter):
    """Carried-forward amounts still waiting for a later invoice: finance settles those of an
    organisation that will have no further invoice (bank transfer or write-off)."""

    title = _("carried forward")
    parameter_name = "carried"

    def lookups(self, request, model_admin):
        return [("waiting", _("Waiting for a later invoice")), ("collected", _("Collected with a later invoice"))]

    def queryset(self, request, queryset):
        carried = queryset.filter(status=Invoice.Status.CARRIED)
        if self.value() == "waiting":
            return carried.filter(carried_into__isnull=True)
        if self.value() == "collected":
            return carried.filter(carried_into__isnull=False)
        return queryset


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Finance sees invoices and payments; an invoice is never edited (the portal is the system
    of record): its status changes only through the billing services (payments, webhooks, void);
    a void invoice's month is corrected by a re-issue, a new invoice that names it."""

    list_display = [
        "number", "organisation", billing_month, "total", "amount_due", "status", "transfer_only", "due", "paid_at",
        "payment_attempts",
    ]  # fmt: skip
    # Money fields are shown by the displays below (thousands separators in every language).
    exclude = list(INVOICE_MONEY)
    list_filter = ["status", CollectionFilter, "transfer_only", "month"]
    search_fields = ["number", "organisation__name_ko", "organisation__name_en", "buyer_brn"]
    list_select_related = ["organisation"]
    inlines = [InvoiceLineInline, BankTransferInline, InvoiceEventInline]
    actions = ["export_csv"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # Money through the displays below (thousands separators), the due date and amount due
        # through theirs (a dash for a carried amount, a void one).
        shown = {**INVOICE_MONEY, "due_on": "due", "month": "invoice_month"}
        return [*(shown.get(f.name, f.name) for f in Invoice._meta.fields), "amount_due", "replaced_by_invoice"]

    def get_fields(self, request, obj=None) -> list[str]:
        return self.get_readonly_fields(request, obj)  # nothing editable: due_on shows as `due`

    supply, vat, total, carried = (money_display(field) for field in INVOICE_MONEY)
    invoice_month = staticmethod(billing_month)

    @admin.display(description=_("replaced by"))
    def replaced_by_invoice(self, obj: Invoice) -> str:
        replacement = Invoice.objects.filter(replaces=obj).first()
        return str(replacement) if replacement else "–"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        extra = [
            path("<int:pk>/void/", self.admin_site.admin_view(self.void_view), name="billing_invoice_void"),
            path("<int:pk>/credit/", self.admin_site.admin_view(self.credit_view), name="billing_invoice_credit"),
            path("<int:pk>/reissue/", self.admin_site.admin_view(self.reissue_view), name="billing_invoice_reissue"),
            path("<int:pk>/transfer/", self.admin_site.admin_view(self.transfer_view), name="billing_invoice_transfer"),
            path(
                "<int:pk>/write-off/", self.admin_site.admin_view(self.write_off_view), name="billing_invoice_write_off"
            ),
        ]
        return extra + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_void": request.user.has_perm("billing.void_invoice"),
            "can_credit": request.user.has_perm("billing.issue_credit_note"),
            # A void invoice not yet re-issued: its month may be re-issued (the service checks again).
            "can_reissue": request.user.has_perm("billing.reissue_invoice")
            and str(object_id).isdigit()  # any other address is Django's "doesn't exist", not a 500
            and Invoice.objects.filter(pk=object_id, status=Invoice.Status.VOID, replaced_by__isnull=True).exists(),
            "can_record_transfer": request.user.has_perm("billing.record_transfer"),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("amount due (KRW)"))
    def amount_due(self, obj: Invoice) -> str:
        """A void invoice owes nothing: what it had collected from earlier months was handed back
        (the next invoice collects it), so it shows no amount due."""
        if obj.status == Invoice.Status.VOID:
            return str(_("– (void)"))
        return won(obj.amount_due_krw)

    @admin.display(description=_("due on"), ordering="due_on")
    def due(self, obj: Invoice) -> str:
        """An amount carried forward has no due date (it never is due by itself): a dash."""
        return f"{obj.due_on:%Y-%m-%d}" if obj.due_on else "–"

    def _page(self, request, invoice: Invoice, form, title, template: str, *, check, **extra) -> TemplateResponse:
        """An action's page. Opened (GET) for an invoice the action's service would refuse now
        (`check`, the same test the service makes again under its lock), it says why instead of
        showing the form; a POST still goes to the service, which checks again."""
        refusal = ""
        if request.method != "POST":
            try:
                check(invoice)
            except PortalError as exc:
                refusal = exc.message
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "invoice": invoice,
            "form": None if refusal else form,
            "refusal": refusal,
            **extra,
        }
        return TemplateResponse(request, template, context)

    def _action(
        self, request, pk: int, *, perm: str, form_class, act, title, template: str, check, initial=None, preview=None
    ):
        """Every invoice action page has this shape: the permission first (403 without it), the
        invoice among those this staff user sees (404), the form (`initial(invoice)`); a valid POST
        runs `act(invoice, cleaned_data)`, which returns (message level, message, id of the invoice
        to show next) or raises the service's PortalError, shown on the form with what was typed
        kept. `preview(invoice)`: what the page shows beside the form."""
        if not request.user.has_perm(perm):
            raise PermissionDenied
        invoice = get_object_or_404(self.get_queryset(request).select_related("organisation"), pk=pk)
        form = form_class(request.POST or None, initial=initial(invoice) if initial else None)
        if request.method == "POST" and form.is_valid():
            try:
                level, message, shown = act(invoice, form.cleaned_data)
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                messages.add_message(request, level, message)
                return redirect(reverse("admin:billing_invoice_change", args=[shown]))
        extra = {"preview": preview(invoice)} if preview else {}
        return self._page(request, invoice, form, title % {"number": invoice}, template, check=check, **extra)

    def transfer_view(self, request, pk: int):
        """Record a bank transfer paying the invoice (permission `billing.record_transfer`)."""

        def act(invoice, data):
            _transfer, created = bank_transfer_record(invoice_id=invoice.pk, actor=request.user, **data)
            if created:
                return messages.SUCCESS, _("The transfer is recorded and the invoice is paid."), invoice.pk
            return messages.INFO, _("This transfer was already recorded; nothing changed."), invoice.pk

        return self._action(
            request, pk, perm="billing.record_transfer", form_class=TransferForm, act=act,
            title=_("Record a bank transfer for invoice %(number)s"), template="admin/billing/invoice_transfer.html",
            check=bank_transfer_check, initial=lambda invoice: {"amount_krw": invoice.amount_due_krw},
        )  # fmt: skip

    def write_off_view(self, request, pk: int):
        """Write off a carried-forward amount no invoice will collect (permission
        `billing.issue_credit_note`: it issues a credit note)."""

        def act(invoice, data):
            notes = invoice_write_off(invoice_id=invoice.pk, actor=request.user, reason=data["reason"])
            numbers = ", ".join(n.number for n in notes)
            return messages.SUCCESS, _("Written off with credit note %(number)s.") % {"number": numbers}, invoice.pk

        return self._action(
            request, pk, perm="billing.issue_credit_note", form_class=ReasonForm, act=act,
            title=_("Write off invoice %(number)s"), template="admin/billing/invoice_write_off.html",
            check=invoice_write_off_check,
        )  # fmt: skip

    def void_view(self, request, pk: int):
        """Void an unpaid invoice with a reason (permission `billing.void_invoice`)."""

        def act(invoice, data):
            invoice_void(invoice_id=invoice.pk, actor=request.user, reason=data["reason"])
            return messages.SUCCESS, _("The invoice is void."), invoice.pk

        return self._action(
            request, pk, perm="billing.void_invoice", form_class=ReasonForm, act=act,
            title=_("Void invoice %(number)s"), template="admin/billing/invoice_void.html", check=invoice_void_check,
        )  # fmt: skip

    def reissue_view(self, request, pk: int):
        """Re-issue the month of a void invoice (permission `billing.reissue_invoice`): the page
        shows what the month comes to now beside the void invoice, and asks for a reason."""

        def act(invoice, data):
            new = invoice_reissue(invoice_id=invoice.pk, actor=request.user, reason=data["reason"])
            return (
                messages.SUCCESS,
                _("%(new)s issued; it replaces %(old)s.") % {"new": new, "old": invoice.number},
                new.pk,
            )

        return self._action(
            request, pk, perm="billing.reissue_invoice", form_class=ReasonForm, act=act,
            title=_("Re-issue the month of invoice %(number)s"), template="admin/billing/invoice_reissue.html",
            check=invoice_reissue_check, preview=_reissue_preview,
        )  # fmt: skip

    def credit_view(self, request, pk: int):
        """Issue a credit note for a paid invoice (permission `billing.issue_credit_note`)."""

        def act(invoice, data):
            note = credit_note_issue(
                invoice_id=invoice.pk, actor=request.user, reason=data["reason"], supply_krw=data["supply_krw"]
            )
            return messages.SUCCESS, _("Credit note %(number)s issued.") % {"number": note.number}, invoice.pk

        return self._action(
            request, pk, perm="billing.issue_credit_note", form_class=CreditForm, act=act,
            title=_("Credit note for invoice %(number)s"), template="admin/billing/invoice_credit.html",
            check=credit_note_check,
        )  # fmt: skip

    @admin.action(description=_("Export the selected invoices as CSV"))
    def export_csv(self, request, queryset) -> HttpResponse:
        """One row per invoice: its own total, the carried amounts it collects and the amount due
        (what Stripe or the bank received for it; 0 for a void one, whose carried amounts were
        handed back, and for a carried one collected with a later invoice), the invoice that
        collected a carried one (`collected_with`), and the void invoice a re-issue replaces."""
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
        response.write("\ufeff")  # a byte order mark: Excel then reads UTF-8, not CP949
        writer = csv.writer(response)
        writer.writerow(
            ["number", "month", "organisation", "buyer_brn", "supply_krw", "vat_krw", "total_krw", "carried_krw",
             "amount_due_krw", "status", "collected_with", "transfer_only", "replaces", "paid_at"]
        )  # fmt: skip
        invoices = queryset.select_related("organisation", "carried_into", "replaces").order_by("number")
        for inv in invoices:
            # Nothing is due on a void invoice (its carried amounts were handed back), nor on a
            # carried one another invoice collected (its amount is in that invoice's): the column
            # adds up to what was asked for, each won once.
            due = 0 if inv.status == Invoice.Status.VOID or inv.carried_into_id else inv.amount_due_krw
            writer.writerow(
                [inv.number, f"{inv.month:%Y-%m}", _cell(inv.buyer_name), inv.buyer_brn, inv.supply_krw, inv.vat_krw,
                 inv.total_krw, inv.carried_krw, due, inv.status,
                 inv.carried_into.number if inv.carried_into else "", "yes" if inv.transfer_only else "no",
                 inv.replaces.number if inv.replaces else "", inv.paid_at.isoformat() if inv.paid_at else ""]
            )  # fmt: skip
        return response


def _reissue_preview(void: Invoice) -> dict:
    """What re-issuing the void invoice's month would bill now: the month priced as the ledger
    is now, the earlier carried-forward amounts it would collect (handed back by the void), and
    the resulting amount due, as `invoice_reissue` computes them."""
    try:
        result, vat = month_statement(organisation=void.organisation, month=void.month)
    except ledger.LedgerError as exc:
        return {"error": str(exc)}
    total = result.supply_krw + vat
    carried = carried_waiting(organisation_id=void.organisation_id, month=void.month) if total > 0 else []
    carried_krw = sum(x.amount_due_krw for x in carried)
    return {
        "supply": result.supply_krw, "vat": vat, "total": total,
        "carried": carried, "carried_krw": carried_krw, "due": total + carried_krw,
    }  # fmt: skip


def _cell(text: str) -> str:
    """Text an organisation chose, made inert in a spreadsheet: a leading =, +, -, @, tab or
    carriage return would start a formula (CSV injection), so it gets a leading apostrophe."""
    return f"'{text}" if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


from billing import admin_records  # noqa: E402, F401 - registers the billing record admins
