from django.contrib import admin

from allocations.models import Gpu, Grant, GrantEvent, Node


class GpuInline(admin.TabularInline):
    model = Gpu
    extra = 0
    can_delete = False
    readonly_fields = ["index", "uuid", "model", "memory_mib"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["hostname", "address", "ssh_port", "gpu_model", "status", "host_key_fingerprint", "last_report_at"]
    list_filter = ["status", "gpu_model"]
    search_fields = ["hostname", "address"]
    readonly_fields = ["host_key", "host_key_fingerprint", "last_report_at", "created_at"]
    inlines = [GpuInline]


class GrantEventInline(admin.TabularInline):
    model = GrantEvent
    extra = 0
    can_delete = False
    readonly_fields = ["created_at", "actor", "old_status", "new_status", "reason"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin):
    list_display = ["pk", "organisation", "gpu_model", "gpu_count", "gpu_hours", "starts_on", "ends_on", "status"]
    list_filter = ["status", "gpu_model"]
    search_fields = ["organisation__name_en", "organisation__name_ko", "application__title"]
    inlines = [GrantEventInline]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [f.name for f in Grant._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # grants are created by approving an application
