"""Accounts and organisations: memberships, invitations, e-mail domains."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from portal.mail import mail_render_and_enqueue
from portal.models import Invitation, Membership, Organisation, OrganisationDomain, User
from portal.services.errors import PortalError
from portal.validators import email_domain

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

    A domain is verified at once only when the creator holds a verified address on it; other
    domains wait for an operator. A domain already verified elsewhere is refused, so a domain
    never routes users to two organisations."""
    taken = set(OrganisationDomain.objects.filter(domain__in=domains, verified=True).values_list("domain", flat=True))
    if taken:
        raise PortalError(
            _("The e-mail domain %(domains)s already belongs to another organisation.")
            % {"domains": ", ".join(sorted(taken))},
            code="domain_taken",
        )
    own_domains = {email_domain(e) for e in verified_emails(user)}
    try:
        with transaction.atomic():
            org = Organisation.objects.create(
                kind=kind,
                name_ko=name_ko,
                name_en=name_en,
                business_registration_number=business_registration_number or None,
                founded_on=founded_on,
                created_by=user,
            )
    except IntegrityError as exc:
        raise PortalError(
            _("An organisation with this business registration number is already registered."),
            code="duplicate_brn",
        ) from exc
    OrganisationDomain.objects.bulk_create(
        OrganisationDomain(organisation=org, domain=d, verified=d in own_domains) for d in dict.fromkeys(domains)
    )
    Membership.objects.create(user=user, organisation=org, role=Membership.Role.OWNER)
    return org


@transaction.atomic
def membership_join_by_email_domain(*, user: User) -> list[Membership]:
    """Join every academic organisation that owns a verified domain of one of the user's verified
    addresses. Called when an address is confirmed; safe to call again."""
    domains = {email_domain(e) for e in verified_emails(user)}
    orgs = Organisation.objects.filter(
        kind__in=Organisation.ACADEMIC_KINDS, domains__domain__in=domains, domains__verified=True
    ).distinct()
    joined = []
    for org in orgs:
        membership, created = Membership.objects.get_or_create(
            user=user, organisation=org, defaults={"role": Membership.Role.MEMBER}
        )
        if created:
            joined.append(membership)
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


@transaction.atomic
def invitation_create(*, organisation: Organisation, email: str, role: str, invited_by: User) -> Invitation:
    membership_require_owner(user=invited_by, organisation=organisation)
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
    membership, _created = Membership.objects.get_or_create(
        user=user, organisation=invitation.organisation, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    return membership


@transaction.atomic
def organisation_domain_verify(*, domain: OrganisationDomain) -> OrganisationDomain:
    """An operator confirms that the organisation owns the domain. Members with verified
    addresses on it then join (academic organisations)."""
    domain = OrganisationDomain.objects.select_for_update().get(pk=domain.pk)
    if domain.verified:
        return domain
    if OrganisationDomain.objects.filter(domain=domain.domain, verified=True).exists():
        raise PortalError(_("This domain is already verified for another organisation."), code="domain_taken")
    domain.verified = True
    domain.save(update_fields=["verified"])
    if domain.organisation.is_academic:
        from allauth.account.models import EmailAddress

        user_ids = EmailAddress.objects.filter(verified=True, email__iendswith="@" + domain.domain).values_list(
            "user_id", flat=True
        )
        for user in User.objects.filter(pk__in=user_ids):
            membership_join_by_email_domain(user=user)
    return domain


def _ensure_an_owner_remains(organisation: Organisation, leaving: Membership) -> None:
    owners = Membership.objects.select_for_update().filter(organisation=organisation, role=Membership.Role.OWNER)
    if leaving.role == Membership.Role.OWNER and not owners.exclude(pk=leaving.pk).exists():
        raise PortalError(_("An organisation must keep at least one owner."), code="last_owner")


@transaction.atomic
def membership_set_role(*, membership: Membership, role: str, actor: User) -> Membership:
    membership_require_owner(user=actor, organisation=membership.organisation)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if role != Membership.Role.OWNER:
        _ensure_an_owner_remains(membership.organisation, membership)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: User) -> None:
    """Owners remove anyone; members may leave on their own."""
    if membership.user_id != actor.pk:
        membership_require_owner(user=actor, organisation=membership.organisation)
    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    _ensure_an_owner_remains(membership.organisation, membership)
    membership.delete()
