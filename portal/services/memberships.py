"""Roles, leaving and removal, and passing the principal investigator's role on.

Every change writes an OrganisationAuditLog row: a membership that ended is remembered there,
and the conflict-of-interest rule reads it. Changes to an organisation's owners lock the
organisation row first and then every owner membership in primary-key order, so two owners
demoting each other at once queue instead of deadlocking.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from portal.errors import PortalError
from portal.models import Application, Membership, Organisation, OrganisationAuditLog, User, audit
from portal.services.organisations import membership_require_owner

A = OrganisationAuditLog.Action
S = Application.Status
OPEN_STATUSES = (S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.RETURNED)
LIVE_GRANT_STATUSES = ("pending", "provisioning", "active", "suspended")


def _lock_owners(organisation: Organisation) -> list[Membership]:
    """Lock in a fixed order: the organisation row, then its owners by pk."""
    Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
    return list(
        Membership.objects.select_for_update()
        .filter(organisation=organisation, role=Membership.Role.OWNER)
        .order_by("pk")
    )


def _ensure_an_owner_remains(owners: list[Membership], leaving: Membership) -> None:
    if leaving.role == Membership.Role.OWNER and not [m for m in owners if m.pk != leaving.pk]:
        raise PortalError(_("An organisation must keep at least one owner."), code="last_owner")


def membership_add(
    *, user: User, organisation: Organisation, role: str, actor: User | None, reason: str = ""
) -> Membership:
    """Create the membership if missing, with its audit row. Returns the (existing) membership."""
    membership, created = Membership.objects.get_or_create(
        user=user, organisation=organisation, defaults={"role": role}
    )
    if created:
        audit(organisation=organisation, action=A.MEMBER_JOINED, actor=actor, user=user, new=role, reason=reason)
    return membership


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str, actor: User) -> Membership:
    organisation = membership.organisation
    owners = _lock_owners(organisation)
    membership_require_owner(user=actor, organisation=organisation)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if role != Membership.Role.OWNER:
        _ensure_an_owner_remains(owners, membership)
    if membership.role != role:
        audit(organisation=organisation, action=A.MEMBER_ROLE_CHANGED, actor=actor, user=membership.user,
              old=membership.role, new=role)  # fmt: skip
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def applications_led(*, user: User, organisation: Organisation):
    """Applications of the organisation that `user` leads and that still matter: open ones and
    approved ones whose grant is live."""
    return Application.objects.filter(organisation=organisation, principal_investigator=user).filter(
        Q(status__in=OPEN_STATUSES) | Q(status=S.APPROVED, grant__status__in=LIVE_GRANT_STATUSES)
    )


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    """Owners remove anyone; members may leave on their own. The user then loses the
    organisation's applications and grants, and their node access on its grants is revoked. A
    principal investigator must first have their role passed on by an owner."""
    organisation = membership.organisation
    owners = _lock_owners(organisation)
    if membership.user_id != actor.pk:
        membership_require_owner(user=actor, organisation=organisation)
    membership = Membership.objects.select_for_update().select_related("user").filter(pk=membership.pk).first()
    if membership is None:
        return
    _ensure_an_owner_remains(owners, membership)
    led = list(applications_led(user=membership.user, organisation=organisation).values_list("title", flat=True))
    if led:
        raise PortalError(
            _(
                "%(email)s is the principal investigator of %(titles)s. An owner must first pass that role to "
                "another member (on the application's page)."
            )
            % {"email": membership.user.email, "titles": ", ".join(f"“{t or '-'}”" for t in led)},
            code="leads_applications",
        )
    user = membership.user
    membership.delete()
    # Out of every team of the organisation's applications too: a seat left behind would come
    # back to life (pages, attachment, node access) the day they rejoin, unasked.
    for application in Application.objects.filter(organisation=organisation, team=user):
        application.team.remove(user)
    audit(organisation=organisation, action=A.MEMBER_LEFT if user.pk == actor.pk else A.MEMBER_REMOVED,
          actor=actor, user=user, old=membership.role)  # fmt: skip
    from allocations.services.members import organisation_member_removed

    organisation_member_removed(organisation=organisation, user=user)


@transaction.atomic
def application_change_pi(*, application: Application, new_pi: User, actor: User) -> Application:
    """An owner passes the principal investigator's role to another current member. The new PI
    leaves the team (the team never includes the PI) and, on a running grant, gets node access.
    The old PI, unless still on the grant another way, loses the grant's node access as a removed
    member does (out of its group, their Jupyter stopped, their account revoked where nothing else
    needs it)."""
    application = Application.objects.select_for_update().select_related("organisation").get(pk=application.pk)
    organisation = application.organisation
    membership_require_owner(user=actor, organisation=organisation)
    if application.status in (S.REJECTED, S.WITHDRAWN):
        raise PortalError(
            _("This application is “%(status)s”; its principal investigator can no longer change.")
            % {"status": application.get_status_display()},
            code="bad_transition",
        )
    # Locked: a removal of the new PI running at the same moment waits, then sees them lead this.
    if not Membership.objects.select_for_update().filter(organisation=organisation, user=new_pi).exists():
        raise PortalError(_("The principal investigator must be a member of the organisation."), code="not_member")
    old = application.principal_investigator
    if old.pk == new_pi.pk:
        return application
    application.principal_investigator = new_pi
    application.version += 1
    application.save(update_fields=["principal_investigator", "version"])
    application.team.remove(new_pi)
    audit(organisation=organisation, action=A.PI_CHANGED, actor=actor, user=new_pi, old=old.email, new=new_pi.email,
          reason=f"application {application.pk}")  # fmt: skip
    grant = getattr(application, "grant", None)
    if grant is not None:
        from allocations.services.members import grant_member_added, grant_member_removed

        grant_member_added(grant=grant, user=new_pi)
        if old not in grant.members():
            grant_member_removed(grant=grant, user=old)
    return application
