"""GPU models in the admin: operators add a new GPU generation here (no migration), with the
NVML product names its GPUs report. A model that anything refers to cannot be deleted: the
references are PROTECT foreign keys, and the admin's delete page lists what refers to it."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from allocations.gpu_models import gpu_model_labels
from allocations.models import GpuModel
from portal.admin_scale import ScaledAdmin


class GpuModelListFilter(admin.SimpleListFilter):
    """Filter a list by GPU model, with the names from the label table (no query per page)."""

    title = _("GPU model")
    parameter_name = "gpu_model"
    field = "gpu_model"

    def lookups(self, request, model_admin):
        return list(gpu_model_labels().items())

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{f"{self.field}_id": self.value()})
        return queryset


class GpuModelChoiceField(forms.TypedChoiceField):
    """A GPU model select whose choices come from the label table (no query to show the form);
    the model's own validation checks the chosen code exists when the form is saved (the field
    accepts a code, see GpuModelDescriptor)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(choices=lambda: [("", "---------"), *gpu_model_labels().items()], **kwargs)


def offered_or_used(used) -> object:
    """Choices for a new reference: the models offered, plus those `used` (a values queryset of
    codes) already refers to, so editing an existing row never fails on a retired model."""
    return GpuModel.objects.filter(Q(active=True) | Q(pk__in=used))


class OfferedGpuModelsMixin:
    """A ModelAdmin or inline whose `gpu_model` select lists offered models (and those in use)."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "gpu_model":
            kwargs["queryset"] = offered_or_used(self.model.objects.values("gpu_model"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(GpuModel)
class GpuModelAdmin(ScaledAdmin):
    list_display = ["code", "name", "memory_gib", "gpus_per_node", "nvml_list", "active"]
    list_filter = ["active"]
    search_fields = ["code", "name"]
    fields = ["code", "name", "memory_gib", "gpus_per_node", "nvml_names", "active", "created_at"]
    readonly_fields = ["created_at"]

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        # The code is what every node, GPU, call, grant and rate stores: it never changes.
        return [*self.readonly_fields, "code"] if obj is not None else list(self.readonly_fields)

    @admin.display(description=_("NVML product names"))
    def nvml_list(self, obj: GpuModel) -> str:
        return ", ".join(obj.nvml_names) or "–"
