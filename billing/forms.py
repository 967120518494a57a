from django import forms
from django.utils.translation import gettext_lazy as _

from allocations.models import GpuModel
from billing.services.payments import MAX_PACK_HOURS


class HourPackForm(forms.Form):
    gpu_model = forms.ChoiceField(label=_("GPU model"), choices=GpuModel.choices)
    gpu_hours = forms.IntegerField(label=_("GPU-hours"), min_value=1, max_value=MAX_PACK_HOURS)
