"""Who hears about the organisation's money."""

from __future__ import annotations

from portal.models import Membership


def billing_recipients(organisation_id: int) -> list:
    """Billing members get invoices and payment news; the owners when there are none. Read at
    send time: someone who left the organisation hears nothing."""
    members = Membership.objects.filter(organisation_id=organisation_id).select_related("user").order_by("pk")
    billing = [m.user for m in members if m.role == Membership.Role.BILLING]
    return billing or [m.user for m in members if m.role == Membership.Role.OWNER]
