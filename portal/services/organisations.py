"""Accounts and organisations: memberships, invitations, e-mail domains."""

from __future__ import annotations

from datetime import date, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.errors import PortalError
from portal.mail import mail_render_and_enqueue
from portal.models import Invitation, Membership, Organisation, OrganisationAuditLog, OrganisationDomain, User, audit
from portal.validators import email_domain, validate_business_registration_number

INVITATION_SALT = "portal.invitation"


def verified_emails(user: User) -> set[str]:
    from allauth.account.models import EmailAddress

    return {e.lower() for e in EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)}


@transaction.atomic
def organisation_create(
    *,
    user: User,
    kind: str,
    name_ko: str,
    name_en: str,
    domains: list[str],
    business_registration_number: str | None = None,
    founded_on: date | None = None,
) -> Organisation:
    """Create an organisation with `user` as its owner.

    Domains are verified only by an operator, or at once for an academic organisation when the
    domain is on the operators' institutional list and the creator holds a verified address on
    it (services/domains.py). Public webmail domains and domains verified elsewhere are refused.
    A business registration number is only "claimed" until an operator confirms it; a number
    another organisation holds confirmed is refused."""
    from portal.services.domains import domains_add, refuse_public_domains
    from portal.services.memberships import membership_add

    refuse_public_domains(domains)
    taken = set(OrganisationDomain.objects.filter(domain__in=domains, verified=True).values_list("domain", flat=True))
    if taken:
        raise PortalError(
            _("The e-mail domain %(domains)s already belongs to another organisation.")
            % {"domains": ", ".join(sorted(taken))},
            code="domain_taken",
        )
    number = business_registration_number or None
    if number:
        try:
            validate_business_registration_number(number)
        except ValidationError as exc:
            raise PortalError(" ".join(exc.messages), code="invalid_brn") from exc
    if number and Organisation.objects.filter(business_registration_number=number, brn_status="verified").exists():
        raise PortalError(
            _(
                "An organisation with this business registration number is already registered and confirmed. "
                "If the number is yours, contact the centre with your registration certificate."
            ),
            code="duplicate_brn",
        )
    org = Organisation.objects.create(
        kind=kind,
        name_ko=name_ko,
        name_en=name_en,
        business_registration_number=number,
        brn_status=Organisation.BrnStatus.CLAIMED if number else Organisation.BrnStatus.NONE,
        founded_on=founded_on,
        created_by=user,
    )
    if number:
        audit(organisation=org, action=OrganisationAuditLog.Action.BRN_CLAIMED, actor=user, new=number)
    domains_add(
        organisation=org, domains=domains, actor=user, own_domains={email_domain(e) for e in verified_emails(user)}
    )
    membership_add(
        user=user, organisation=org, role=Membership.Role.OWNER, actor=user, reason="created the organisation"
    )
    return org


@transaction.atomic
def membership_join_by_email_domain(*, user: User, domain: str) -> list[Membership]:
    """Join the academic organisation that owns `domain` (verified) if the user has a verified
    address on it. Called for the one address just confirmed, or the one domain an operator just
    verified: confirming some other address never joins anything else. An organisation the user
    was removed from, or left, is skipped (its latest audit row about them says so): only an
    owner's invitation brings them back. Unverified domains never let anyone in."""
    from portal.services.memberships import membership_add

    domain = domain.lower()
    if domain not in {email_domain(e) for e in verified_emails(user)}:
        return []
    verified = OrganisationDomain.objects.filter(organisation=OuterRef("pk"), domain=domain, verified=True)
    orgs = Organisation.objects.filter(Exists(verified), kind__in=Organisation.ACADEMIC_KINDS)
    gone = {OrganisationAuditLog.Action.MEMBER_REMOVED, OrganisationAuditLog.Action.MEMBER_LEFT}
    joined = []
    for org in orgs:
        if Membership.objects.filter(user=user, organisation=org).exists():
            continue
        latest = (
            OrganisationAuditLog.objects.filter(
                organisation=org, user=user, action__in=OrganisationAuditLog.MEMBERSHIP_ACTIONS
            )
            .values_list("action", flat=True)
            .first()
        )
        if latest in gone:
            continue
        joined.append(
            membership_add(user=user, organisation=org, role=Membership.Role.MEMBER, actor=None, reason="e-mail domain")
        )
    return joined


def invitation_token(invitation: Invitation) -> str:
    return signing.TimestampSigner(salt=INVITATION_SALT).sign(str(invitation.pk))


def invitation_from_token(token: str) -> Invitation:
    """The invitation a link names. Raises PortalError for a malformed, forged, expired or used
    link, each with its own message."""
    signer = signing.TimestampSigner(salt=INVITATION_SALT)
    try:
        pk = signer.unsign(token, max_age=settings.INVITATION_MAX_AGE_DAYS * 86400)
    except signing.SignatureExpired as exc:
        raise PortalError(
            _("This invitation has expired. Ask the organisation for a new one."), code="expired"
        ) from exc
    except signing.BadSignature as exc:
        raise PortalError(_("This invitation link is not valid. Check that it was copied whole."), code="bad") from exc
    invitation = Invitation.objects.select_related("organisation").filter(pk=pk).first()
    if invitation is None:
        raise PortalError(_("This invitation link is not valid. Check that it was copied whole."), code="bad")
    if invitation.accepted_at is not None:
        raise PortalError(_("This invitation has already been used."), code="used")
    if invitation.is_expired():
        raise PortalError(_("This invitation has expired. Ask the organisation for a new one."), code="expired")
    return invitation


def membership_require_owner(*, user: User, organisation: Organisation) -> None:
    if not Membership.objects.filter(user=user, organisation=organisation, role=Membership.Role.OWNER).exists():
        raise PortalError(_("Only an owner of the organisation can do this."), code="not_owner")


def _invitation_rate_limit(*, organisation: Organisation, invited_by: User) -> None:
    """Invitations are e-mails to addresses the inviter chose: at most so many a day per
    organisation and per inviter (the organisation row is locked so a burst cannot overshoot)."""
    Organisation.objects.select_for_update().filter(pk=organisation.pk).first()
    since = timezone.now() - timedelta(days=1)
    recent = Invitation.objects.filter(created_at__gte=since)
    if recent.filter(organisation=organisation).count() >= settings.INVITATIONS_PER_ORGANISATION_PER_DAY:
        raise PortalError(
            _(
                "This organisation has sent %(n)d invitations in the last 24 hours, the most allowed. "
                "Try again tomorrow."
            )
            % {"n": settings.INVITATIONS_PER_ORGANISATION_PER_DAY},
            code="rate_limited",
        )
    if recent.filter(invited_by=invited_by).count() >= settings.INVITATIONS_PER_INVITER_PER_DAY:
        raise PortalError(
            _("You have sent %(n)d invitations in the last 24 hours, the most allowed. Try again tomorrow.")
            % {"n": settings.INVITATIONS_PER_INVITER_PER_DAY},
            code="rate_limited",
        )


@transaction.atomic
def invitation_create(*, organisation: Organisation, email: str, role: str, invited_by: User) -> Invitation:
    membership_require_owner(user=invited_by, organisation=organisation)
    _invitation_rate_limit(organisation=organisation, invited_by=invited_by)
    email = email.strip().lower()
    if Membership.objects.filter(organisation=organisation, user__email__iexact=email).exists():
        raise PortalError(_("%(email)s is already a member.") % {"email": email}, code="already_member")
    invitation = Invitation.objects.create(organisation=organisation, email=email, role=role, invited_by=invited_by)
    link = settings.SITE_URL + reverse("portal:invitation_accept", args=[invitation_token(invitation)])
    existing_user = User.objects.filter(email__iexact=email).first()
    mail_render_and_enqueue(
        template="invitation",
        to=email,
        language=existing_user.language if existing_user else None,
        context={"invitation": invitation, "organisation": organisation, "link": link, "inviter": invited_by},
    )
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Membership:
    """Accept once: the row is locked so two clicks cannot both succeed."""
    invitation = invitation_from_token(token)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None:
        raise PortalError(_("This invitation has already been used."), code="used")
    if invitation.email.lower() not in verified_emails(user):
        raise PortalError(
            _("This invitation was sent to %(email)s. Sign in with that address (verified) to accept it.")
            % {"email": invitation.email},
            code="wrong_user",
        )
    from portal.services.memberships import membership_add

    membership = membership_add(
        user=user, organisation=invitation.organisation, role=invitation.role, actor=invitation.invited_by,
        reason=f"invitation {invitation.pk}",
    )  # fmt: skip
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership
