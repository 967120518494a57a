from django.contrib import admin

from allocations.models import Gpu, Node


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
