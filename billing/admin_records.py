"""Billing records in the admin, read-only (written by the billing services, webhooks and jobs,
never typed): hour packs, Stripe events, bank transfers, billing accounts, credit notes, and the
invoicing runs with their live progress and the page that queues a month's invoicing.
Registered by importing it at the bottom of `billing/admin.py`."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.admin_gpu_models import GpuModelListFilter
from billing.admin_display import billing_month
from billing.models import BankTransfer, BillingAccount, CreditNote, HourPack, InvoicingRun, StripeEvent
from billing.services.invoicing_runs import invoicing_run_queue
from portal.admin_numbers import grouped_field
from portal.admin_progress import ProgressAdminMixin
from portal.errors import PortalError
from portal.progress import elapsed_text, stalled_note


class ReadOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HourPack)
class HourPackAdmin(ReadOnlyAdmin):
    list_display = [
        "organisation",
        "gpu_model",
        "gpu_hours_shown",
        "total_krw_shown",
        "status",
        "created_at",
        "paid_at",
    ]
    gpu_hours_shown = grouped_field(HourPack, "gpu_hours")
    total_krw_shown = grouped_field(HourPack, "total_krw")
    list_filter = ["status", GpuModelListFilter]
    list_select_related = ["organisation", "gpu_model"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "created", "received_at", "processed_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["event_id"]


@admin.register(BankTransfer)
class BankTransferAdmin(ReadOnlyAdmin):
    """Transfers finance recorded (Admin → Billing → Invoices → a transfer is recorded there)."""

    list_display = ["invoice", "amount_krw_shown", "received_on", "reference", "recorded_by", "created_at"]
    amount_krw_shown = grouped_field(BankTransfer, "amount_krw")
    list_select_related = ["invoice", "recorded_by"]
    search_fields = ["reference", "invoice__number"]


@admin.register(BillingAccount)
class BillingAccountAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "stripe_customer_id", "has_card", "created_at"]
    list_select_related = ["organisation"]

    @admin.display(description=_("Card saved"), boolean=True)
    def has_card(self, obj: BillingAccount) -> bool:
        return obj.has_card


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "invoice", "issued_on", "total_krw_shown", "issued_by", "pdf"]
    total_krw_shown = grouped_field(CreditNote, "total_krw")
    list_select_related = ["invoice", "issued_by"]
    search_fields = ["number", "invoice__number"]
    exclude = ["document"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("document")

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields if f.name != "document"]

    @admin.display(description="PDF")
    def pdf(self, obj: CreditNote) -> str:
        from django.utils.html import format_html

        return format_html('<a href="{}">PDF</a>', reverse("billing:credit_note_pdf", args=[obj.pk]))


@admin.register(InvoicingRun)
class InvoicingRunAdmin(ProgressAdminMixin, ReadOnlyAdmin):
    """Each invoicing run (monthly job or `manage.py run_invoicing`): while it runs, its page shows
    how many organisations are done, which one it is on, and the latest lines it printed."""

    list_display = [billing_month, "state", "done", "total", "current", "started_at", "finished_at"]
    list_filter = ["state", "month"]
    fields = ["month", "state", "progress", "total", "done", "counts", "error", "started_at", "finished_at"]
    change_list_template = "admin/billing/invoicingrun/change_list.html"

    def get_urls(self):
        start = path("start/", self.admin_site.admin_view(self.start_view), name="billing_invoicingrun_start")
        return [start, *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        can_start = request.user.has_perm("billing.add_invoicingrun")
        return super().changelist_view(request, {**(extra_context or {}), "can_start": can_start})

    def start_view(self, request):
        """Queue a month's invoicing (permission `billing.add_invoicingrun`); its run appears in
        the list, with its progress, once a worker starts it."""
        if not request.user.has_perm("billing.add_invoicingrun"):
            raise PermissionDenied
        form = StartRunForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                queued = invoicing_run_queue(month=form.cleaned_data["month"])
            except PortalError as exc:
                form.add_error("month", exc.message)
            else:
                if queued:
                    messages.success(request, _("Invoicing is queued; its run appears here when a worker starts it."))
                else:
                    messages.info(
                        request,
                        _("This month's invoicing is already queued; its run appears here when a worker starts it."),
                    )
                return redirect(reverse("admin:billing_invoicingrun_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Invoice a month"),
            "form": form,
        }
        return TemplateResponse(request, "admin/billing/invoicingrun/start.html", context)

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return self.fields

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("billing.view_invoice")

    def has_module_permission(self, request) -> bool:
        return request.user.has_perm("billing.view_invoice")

    def progress_of(self, obj: InvoicingRun) -> dict:
        finished = obj.state != InvoicingRun.State.RUNNING
        seconds = ((obj.finished_at or timezone.now()) - obj.started_at).total_seconds()
        summary = _("%(done)d of %(total)d organisations, %(elapsed)s") % {
            "done": obj.done,
            "total": obj.total,
            "elapsed": elapsed_text(seconds),
        }
        if obj.current and not finished:
            summary += " · " + obj.current
        if note := stalled_note(steps=obj.steps, since=obj.started_at, finished=finished):
            summary += " · " + note
        return {
            "state": str(obj.get_state_display()),
            "code": obj.state,
            "finished": finished,
            "done": obj.done,
            "total": obj.total,
            "counts": obj.counts,
            "summary": str(summary),
            "steps": obj.steps,
        }


class StartRunForm(forms.Form):
    month = forms.DateField(
        label=_("Month"),
        input_formats=["%Y-%m"],
        widget=forms.DateInput(format="%Y-%m", attrs={"placeholder": "YYYY-MM"}),
    )
