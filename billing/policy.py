"""What happens to a grant once its subsidised hours are used up: the call says which, the grant
keeps what applied when it was awarded. A module without models, so that portal.Call and
allocations.Grant can both use the choices without importing each other."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class PastSubsidy(models.TextChoices):
    SUSPEND = "suspend", _("Suspended when the subsidised hours are used up")
    GRACE = (
        "grace",
        _(
            "Suspended after a grace period unless the organisation has a saved card or prepaid hours; "
            "billed at the published rate meanwhile"
        ),
    )
    BILLABLE = "billable", _("Keeps running, billed at the published rate")


def past_subsidy_for_kind(kind: str) -> str:
    """The rule that applied before calls chose it: companies got the grace period, academic and
    public organisations were suspended at 100 % (the data migrations use the same rule)."""
    return PastSubsidy.GRACE if kind in {"startup", "sme", "enterprise"} else PastSubsidy.SUSPEND
