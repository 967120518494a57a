"""Business registration numbers: claimed by whoever registers a company, confirmed only by an
operator (after the owner uploads the registration certificate), moved by an operator when a
claim is disputed. Several organisations may claim one number, so a squatter never blocks the
real company; at most one holds it confirmed (a partial unique constraint)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from portal.errors import PortalError
from portal.models import Organisation, OrganisationAuditLog, User, audit
from portal.services.organisations import membership_require_owner

A = OrganisationAuditLog.Action
B = Organisation.BrnStatus


def brn_is_confirmed_elsewhere(number: str, *, exclude_pk: int | None = None) -> bool:
    qs = Organisation.objects.filter(business_registration_number=number, brn_status=B.VERIFIED)
    return qs.exclude(pk=exclude_pk).exists() if exclude_pk else qs.exists()


@transaction.atomic
def organisation_brn_upload_document(*, organisation: Organisation, document, actor: User) -> Organisation:
    """An owner uploads the registration certificate for an operator to check."""
    membership_require_owner(user=actor, organisation=organisation)
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    if not organisation.business_registration_number:
        raise PortalError(_("This organisation has no business registration number."), code="no_brn")
    organisation.brn_document = document
    organisation.save(update_fields=["brn_document"])
    audit(organisation=organisation, action=A.BRN_DOCUMENT_UPLOADED, actor=actor,
          new=organisation.business_registration_number)  # fmt: skip
    return organisation


@transaction.atomic
def organisation_brn_confirm(*, organisation: Organisation, actor: User, reason: str = "") -> Organisation:
    """An operator confirms the organisation's claim (audit row), on the certificate its owners
    uploaded: refused without one. Refused while another organisation holds the number
    confirmed: move it instead."""
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    number = organisation.business_registration_number
    if not number:
        raise PortalError(_("This organisation has no business registration number."), code="no_brn")
    if organisation.brn_status == B.VERIFIED:
        return organisation
    if not organisation.brn_document:
        raise PortalError(
            _("The organisation has not uploaded its business registration certificate yet."), code="no_document"
        )
    if brn_is_confirmed_elsewhere(number, exclude_pk=organisation.pk):
        raise PortalError(
            _("Another organisation holds this number confirmed. Move it from that organisation instead."),
            code="brn_taken",
        )
    old = organisation.brn_status
    organisation.brn_status = B.VERIFIED
    organisation.save(update_fields=["brn_status"])
    audit(organisation=organisation, action=A.BRN_CONFIRMED, actor=actor, old=old, new=number, reason=reason)
    return organisation


@transaction.atomic
def organisation_brn_move(*, source: Organisation, target: Organisation, actor: User, reason: str) -> Organisation:
    """A disputed number goes from `source` to `target`, confirmed there; `source` keeps no
    number (its owners must give their own). Both sides get an audit row with the reason."""
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Give a reason for moving the number."), code="reason_required")
    first, second = sorted([source.pk, target.pk])
    locked = {o.pk: o for o in Organisation.objects.select_for_update().filter(pk__in=[first, second]).order_by("pk")}
    source, target = locked[source.pk], locked[target.pk]
    number = source.business_registration_number
    if source.pk == target.pk or not number:
        raise PortalError(_("Choose another organisation, and one that has a number to move."), code="bad_move")
    if not target.is_company:
        raise PortalError(_("A business registration number can only move to a company."), code="bad_move")
    if (
        Organisation.objects.filter(business_registration_number=number, brn_status=B.VERIFIED)
        .exclude(pk__in=[source.pk, target.pk])
        .exists()
    ):
        raise PortalError(
            _("Another organisation holds this number confirmed. Move it from that organisation instead."),
            code="brn_taken",
        )
    Organisation.objects.filter(pk=source.pk).update(business_registration_number=None, brn_status=B.NONE)
    old_target = target.business_registration_number or ""
    Organisation.objects.filter(pk=target.pk).update(business_registration_number=number, brn_status=B.VERIFIED)
    audit(organisation=source, action=A.BRN_MOVED_AWAY, actor=actor, old=number, new=f"→ {target.pk}", reason=reason)
    audit(organisation=target, action=A.BRN_MOVED_IN, actor=actor, old=old_target, new=number, reason=reason)
    target.refresh_from_db()
    return target
