from collections.abc import Iterable

from django import forms
from django.utils.translation import gettext_lazy as _

from allocations.gpu_models import gpu_model_labels
from billing.models import Rate
from billing.services.payments import MAX_PACK_HOURS


class HourPackForm(forms.Form):
    # The choice is checked again by the service: no rate published for it, no pack.
    gpu_model = forms.ChoiceField(label=_("GPU model"))
    gpu_hours = forms.IntegerField(label=_("GPU-hours"), min_value=1, max_value=MAX_PACK_HOURS)

    def __init__(self, *args, rates: Iterable[Rate], **kwargs) -> None:
        """`rates`: those in force today for the organisation's price tier. Only their GPU models
        are offered: a pack of any other model cannot be priced, so its purchase would fail."""
        super().__init__(*args, **kwargs)
        priced = {r.gpu_model_id for r in rates}
        self.fields["gpu_model"].choices = [(code, name) for code, name in gpu_model_labels().items() if code in priced]

    @property
    def can_buy(self) -> bool:
        return bool(self.fields["gpu_model"].choices)
