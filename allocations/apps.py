from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AllocationsConfig(AppConfig):
    name = "allocations"
    verbose_name = _("Allocations")

    def ready(self) -> None:
        from allocations import gpu_models  # noqa: F401  (connects the label cache to row changes)
