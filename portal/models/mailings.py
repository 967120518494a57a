"""E-mails about an organisation's money or grants, whose recipients are decided when they are
sent. A Mailing names who is to be told (an audience: a function of the mail's objects that
reads memberships, roles and `User.is_active` as they are then) instead of a list of addresses
fixed when the change happened; a member removed, downgraded or deactivated while the mail
waited in the outbox or in RQ hears nothing. A mailing that finds nobody left to tell is kept,
skipped, with the reason, for staff to see; so is one whose condition (a function of the same
objects) says it no longer applies (a "payment failed" e-mail for an invoice paid since)."""

from __future__ import annotations

from django.apps import apps
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.stored_text import grouped

# The e-mails a Mailing sends (its `template`), as staff read them in the admin.
KINDS = {
    "invoice_issued": _("Invoice issued"),
    "invoice_paid": _("Invoice paid"),
    "invoice_payment_failed": _("Card payment failed"),
    "invoice_transfer_only": _("Invoice payable by bank transfer"),
    "invoice_carried": _("Invoice carried forward"),
    "subsidy_threshold": _("Subsidised hours running out"),
    "grant_idle": _("Grant's GPUs idle"),
}
# The plain values (`context`) those e-mails show, labelled for staff.
VALUES = {
    "bank_account": _("Bank account"),
    "error": _("Error"),
    "percent": _("Share of subsidised hours used (%)"),
    "grace_hours": _("Grace period (hours)"),
    "hours": _("Idle hours"),
    "threshold": _("Idle threshold (hours)"),
}
# The objects (`refs`) an e-mail is about.
OBJECTS = {"invoice": _("Invoice"), "grant": _("Grant")}
# Who each audience function names (its docstring, for staff in their language).
AUDIENCES = {
    "billing.services.recipients.invoice_audience": _(
        "The organisation's active billing members, or its active owners when it has none"
    ),
    "billing.services.recipients.subsidy_audience": _(
        "The grant's principal investigator while a member, and the organisation's active billing members "
        "(or owners when it has none)"
    ),
    "allocations.services.findings.grant_members_audience": _(
        "The grant's principal investigator and team who are still members of its organisation"
    ),
}


class Mailing(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        SKIPPED = "skipped", _("Skipped")

    # status → statuses it may become (set only by portal.mail).
    ALLOWED = {Status.QUEUED: {Status.SENT, Status.SKIPPED}, Status.SENT: set(), Status.SKIPPED: set()}

    template = models.CharField(_("template"), max_length=100)
    audience = models.CharField(
        _("audience"),
        max_length=200,
        help_text=_("Dotted path of the function that names the recipients when the e-mail is sent."),
    )
    condition = models.CharField(
        _("condition"),
        max_length=200,
        blank=True,
        help_text=_(
            "Dotted path of the function that says, when the e-mail is sent, why it no longer applies "
            "(then it is skipped with that reason)."
        ),
    )
    organisation = models.ForeignKey(
        "portal.Organisation",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("organisation"),
    )
    # The objects the template shows, reloaded when sent: {"invoice": ["billing.invoice", 12]}.
    refs = models.JSONField(_("objects"), default=dict)
    # Plain values the template shows besides them (a percentage, an error message).
    context = models.JSONField(_("values"), default=dict)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.QUEUED)
    recipients = models.JSONField(_("recipients"), default=list, help_text=_("Whom it was sent to."))
    # The accounts of those addresses: a retry never sends a person a second copy, even at an
    # address changed since (portal.mail.mailing_send).
    recipient_ids = models.JSONField(_("recipient accounts"), default=list)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    done_at = models.DateTimeField(_("sent or skipped"), null=True, blank=True)

    class Meta:
        verbose_name = _("e-mail to an organisation")
        verbose_name_plural = _("e-mails to organisations")
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind_label} ({self.get_status_display()})"

    @property
    def kind_label(self) -> str:
        """The e-mail's kind in the reader's language (the template's name if it has no label)."""
        return str(KINDS.get(self.template, self.template))

    @property
    def audience_label(self) -> str:
        """Who the e-mail goes to, in the reader's language (the function's path if unlisted)."""
        return str(AUDIENCES.get(self.audience, self.audience))

    def values_text(self) -> list[str]:
        """The objects and values the e-mail shows, one "label: value" line each; an object by
        its name (an invoice's number), read now (one query each), or its id if it is gone."""
        lines = []
        for key, ref in sorted(self.refs.items()):
            if len(ref) != 2:
                continue
            try:
                found = apps.get_model(ref[0])._default_manager.filter(pk=ref[1]).first()
            except (LookupError, ValueError):
                found = None
            lines.append(f"{OBJECTS.get(key, key)}: {found}" if found else f"{OBJECTS.get(key, key)} #{ref[1]}")
        for key, value in sorted(self.context.items()):
            if isinstance(value, list):
                shown = ", ".join(map(str, value))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                shown = grouped(value)
            else:
                shown = str(value)
            lines.append(f"{VALUES.get(key, key)}: {shown}")
        return lines

    def can_transition(self, new: str) -> bool:
        return new in self.ALLOWED[self.Status(self.status)]
