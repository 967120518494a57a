import csv

from django.contrib import admin
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.admin_gpu_models import GpuModelListFilter, OfferedGpuModelsMixin
from billing.models import BillingAccount, HourPack, Invoice, InvoiceEvent, InvoiceLine, Rate, StripeEvent


@admin.register(Rate)
class RateAdmin(OfferedGpuModelsMixin, admin.ModelAdmin):
    list_display = ["gpu_model", "price_tier", "krw_per_gpu_hour", "effective_from", "created_by"]
    list_filter = [GpuModelListFilter, "price_tier"]
    date_hierarchy = "effective_from"
    readonly_fields = ["created_at", "created_by"]

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


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = [
        "grant",
        "kind",
        "gpu_model",
        "period_start",
        "period_end",
        "gpu_minutes",
        "krw_per_gpu_hour",
        "percent",
        "amount_krw",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class InvoiceEventInline(admin.TabularInline):
    model = InvoiceEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "actor", "old_status", "new_status", "reason"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(admin.ModelAdmin):
    """Finance sees invoices and payments; an invoice is never edited (the portal is the system
    of record): its status changes only through the billing services (payments, webhooks)."""

    list_display = ["number", "organisation", "month", "total_krw", "status", "due_on", "paid_at", "payment_attempts"]
    list_filter = ["status", "month"]
    search_fields = ["number", "organisation__name_ko", "organisation__name_en", "buyer_brn"]
    list_select_related = ["organisation"]
    inlines = [InvoiceLineInline, InvoiceEventInline]
    actions = ["export_csv"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in Invoice._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description=_("Export the selected invoices as CSV"))
    def export_csv(self, request, queryset) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="invoices.csv"'
        writer = csv.writer(response)
        writer.writerow(
            ["number", "month", "organisation", "buyer_brn", "supply_krw", "vat_krw", "total_krw", "status", "paid_at"]
        )
        for inv in queryset.select_related("organisation").order_by("number"):
            writer.writerow(
                [inv.number, f"{inv.month:%Y-%m}", inv.buyer_name, inv.buyer_brn, inv.supply_krw, inv.vat_krw,
                 inv.total_krw, inv.status, inv.paid_at.isoformat() if inv.paid_at else ""]
            )  # fmt: skip
        return response


class ReadOnlyAdmin(admin.ModelAdmin):
    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HourPack)
class HourPackAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "gpu_model", "gpu_hours", "total_krw", "status", "created_at", "paid_at"]
    list_filter = ["status", GpuModelListFilter]
    list_select_related = ["organisation", "gpu_model"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = ["event_id", "type", "created", "received_at", "processed_at", "outcome"]
    list_filter = ["type"]
    search_fields = ["event_id"]


@admin.register(BillingAccount)
class BillingAccountAdmin(ReadOnlyAdmin):
    list_display = ["organisation", "stripe_customer_id", "has_card", "created_at"]
    list_select_related = ["organisation"]
