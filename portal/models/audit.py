"""Audit rows for role, membership, domain and business-number changes (like zulip's
RealmAuditLog). Rows are never updated or deleted by the portal: a membership that ended is
remembered here, which the conflict-of-interest rule relies on."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OrganisationAuditLog(models.Model):
    class Action(models.TextChoices):
        MEMBER_JOINED = "member_joined", _("Member joined")
        MEMBER_ROLE_CHANGED = "member_role_changed", _("Role changed")
        MEMBER_REMOVED = "member_removed", _("Member removed")
        MEMBER_LEFT = "member_left", _("Member left")
        PI_CHANGED = "pi_changed", _("Principal investigator changed")
        DOMAIN_ADDED = "domain_added", _("Domain added")
        DOMAIN_VERIFIED = "domain_verified", _("Domain verified")
        BRN_CLAIMED = "brn_claimed", _("Business registration number claimed")
        BRN_DOCUMENT_UPLOADED = "brn_document_uploaded", _("Business registration document uploaded")
        BRN_CONFIRMED = "brn_confirmed", _("Business registration number confirmed")
        BRN_MOVED_AWAY = "brn_moved_away", _("Business registration number moved to another organisation")
        BRN_MOVED_IN = "brn_moved_in", _("Business registration number moved from another organisation")
        AWARD_OVERRIDE = "award_override", _("Award limit overridden")

    # Every action that says "this user was a member" at some time.
    MEMBERSHIP_ACTIONS = frozenset(
        {Action.MEMBER_JOINED, Action.MEMBER_ROLE_CHANGED, Action.MEMBER_REMOVED, Action.MEMBER_LEFT}
    )

    organisation = models.ForeignKey(
        "portal.Organisation", on_delete=models.CASCADE, related_name="audit_log", verbose_name=_("organisation")
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("actor"),
    )  # fmt: skip
    # The member the row is about (joined, removed, new role); empty for domain and number rows.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("user"),
    )  # fmt: skip
    action = models.CharField(_("action"), max_length=32, choices=Action.choices)
    old_value = models.CharField(_("old value"), max_length=255, blank=True)
    new_value = models.CharField(_("new value"), max_length=255, blank=True)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(_("time"), default=timezone.now)

    class Meta:
        verbose_name = _("audit row")
        verbose_name_plural = _("audit log")
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["user", "organisation"]),
            models.Index(fields=["organisation", "created_at"]),
            models.Index(fields=["created_at", "id"], name="auditlog_created_idx"),  # the admin's newest first
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.get_action_display()}"


def audit(
    *, organisation, action: str, actor=None, user=None, old: object = "", new: object = "", reason: str = ""
) -> OrganisationAuditLog:
    return OrganisationAuditLog.objects.create(
        organisation=organisation,
        action=action,
        actor=actor,
        user=user,
        old_value=str(old or "")[:255],
        new_value=str(new or "")[:255],
        reason=reason,
    )
