from django import forms
from django.utils.translation import gettext_lazy as _

from allocations.gpu_models import gpu_model_labels
from billing.services.payments import MAX_PACK_HOURS


class HourPackForm(forms.Form):
    # The choice is checked again by the service: no rate published for it, no pack.
    gpu_model = forms.ChoiceField(label=_("GPU model"), choices=lambda: list(gpu_model_labels().items()))
    gpu_hours = forms.IntegerField(label=_("GPU-hours"), min_value=1, max_value=MAX_PACK_HOURS)
