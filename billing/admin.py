from django.contrib import admin
from django.utils import timezone

from billing.models import Rate


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    list_display = ["gpu_model", "price_tier", "krw_per_gpu_hour", "effective_from", "created_by"]
    list_filter = ["gpu_model", "price_tier"]
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
