"""Who hears about the organisation's money and its grants' subsidies: decided when each e-mail
is sent (portal.mail.mailing_send calls these audiences), from the memberships, roles and active
accounts of that moment. A member removed from the organisation, or no longer its owner or
billing member, hears nothing more about its money; a deactivated account hears nothing at all."""

from __future__ import annotations

from portal.models import Mailing, Membership

INVOICE_AUDIENCE = "billing.services.recipients.invoice_audience"
INVOICE_STILL_OPEN = "billing.services.recipients.invoice_no_longer_open"
INVOICE_NOT_VOID = "billing.services.recipients.invoice_voided"
INVOICE_STILL_CARRIED = "billing.services.recipients.invoice_no_longer_carried"
SUBSIDY_AUDIENCE = "billing.services.recipients.subsidy_audience"
R = Membership.Role


def _active_members(organisation_id: int, roles: list[str]) -> list:
    members = (
        Membership.objects.filter(organisation_id=organisation_id, role__in=roles, user__is_active=True)
        .select_related("user")
        .order_by("pk")
    )
    return [m.user for m in members]


def billing_recipients(organisation_id: int) -> list:
    """Billing members get invoices and payment news; the owners when no active billing member
    is left. Read at send time: someone who left the organisation hears nothing."""
    return _active_members(organisation_id, [R.BILLING]) or _active_members(organisation_id, [R.OWNER])


def invoice_audience(*, invoice) -> list:
    """The organisation's active billing members, or its active owners when it has none."""
    return billing_recipients(invoice.organisation_id)


def subsidy_audience(*, grant) -> list:
    """The grant's principal investigator while still an active member of its organisation, and
    the organisation's active billing members (or owners when it has none)."""
    pi = grant.application.principal_investigator
    still_member = Membership.objects.filter(organisation_id=grant.organisation_id, user=pi).exists()
    return ([pi] if still_member and pi.is_active else []) + billing_recipients(grant.organisation_id)


def invoice_voided(*, invoice) -> str:
    """Why the e-mail announcing an invoice no longer applies when it is sent: finance voided
    the invoice before it went out (its "due on" would be wrong); "" otherwise."""
    return f"invoice {invoice.reference} is void now" if invoice.status == invoice.Status.VOID else ""


def invoice_no_longer_open(*, invoice) -> str:
    """Why an e-mail about an open invoice (a failed charge, payable by transfer only) no longer
    applies when it is sent: the invoice was paid, voided or carried forward since; "" while open."""
    if invoice.status == invoice.Status.OPEN:
        return ""
    return f"invoice {invoice.reference} is {invoice.status} now"


def invoice_no_longer_carried(*, invoice) -> str:
    """Why the e-mail saying an invoice is carried forward no longer applies when it is sent:
    finance voided or wrote it off since, or the e-mail announcing the invoice is still to go
    out or went out after the invoice was carried (it is read when sent, so it said so itself:
    one e-mail, not two); "" while it is carried (collected by a later invoice or not yet:
    either way it is added to one)."""
    if invoice.status != invoice.Status.CARRIED:
        return f"invoice {invoice.reference} is {invoice.status} now"
    carried = invoice.events.filter(old_status=invoice.Status.OPEN, new_status=invoice.Status.CARRIED)
    carried_at = carried.order_by("-created_at").values_list("created_at", flat=True).first()
    ref = [invoice._meta.label_lower, invoice.pk]
    announcements = Mailing.objects.filter(organisation_id=invoice.organisation_id, template="invoice_issued")
    for mailing in announcements.exclude(status=Mailing.Status.SKIPPED):
        if mailing.refs.get("invoice") != ref:
            continue
        if mailing.status == Mailing.Status.QUEUED:
            return (
                f"the e-mail announcing invoice {invoice.reference} is still to go out and says it is carried forward"
            )
        if carried_at and mailing.done_at and mailing.done_at >= carried_at:
            return (
                f"the e-mail announcing invoice {invoice.reference} went out after it was carried forward and said so"
            )
    return ""
