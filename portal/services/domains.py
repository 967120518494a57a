"""Organisation e-mail domains: who may claim one and who verifies it.

A verified domain routes every verified address on it into its (academic) organisation, so a
domain is verified only by an operator, or at creation when operators list it as institutional
and the creator holds a verified address on it. Public webmail domains can never be claimed.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from portal.errors import PortalError
from portal.models import InstitutionalDomain, Organisation, OrganisationAuditLog, OrganisationDomain, User, audit

PUBLIC_EMAIL_DOMAINS = frozenset(
    {
        # Korea
        "naver.com", "daum.net", "hanmail.net", "kakao.com", "nate.com", "empal.com", "hanmir.com",
        "korea.com", "dreamwiz.com", "lycos.co.kr", "paran.com", "chol.com", "freechal.com", "hotmail.co.kr",
        # worldwide
        "gmail.com", "googlemail.com", "outlook.com", "outlook.kr", "hotmail.com", "live.com", "msn.com",
        "yahoo.com", "yahoo.co.kr", "ymail.com", "icloud.com", "me.com", "mac.com", "aol.com",
        "proton.me", "protonmail.com", "pm.me", "gmx.com", "gmx.net", "mail.com", "zoho.com", "yandex.com",
        "yandex.ru", "qq.com", "163.com", "126.com", "tutanota.com", "tuta.io", "fastmail.com", "hey.com",
    }
)  # fmt: skip


def is_public_email_domain(domain: str) -> bool:
    domain = domain.lower()
    extra = {d.lower() for d in settings.PUBLIC_EMAIL_DOMAINS_EXTRA}
    return domain in PUBLIC_EMAIL_DOMAINS or domain in extra


def refuse_public_domains(domains: list[str]) -> None:
    public = sorted(d for d in domains if is_public_email_domain(d))
    if public:
        raise PortalError(
            _("%(domains)s is a public e-mail service and cannot belong to an organisation.")
            % {"domains": ", ".join(public)},
            code="public_domain",
        )


def is_institutional(domain: str) -> bool:
    return InstitutionalDomain.objects.filter(domain=domain.lower()).exists()


def domains_add(*, organisation: Organisation, domains: list[str], actor: User, own_domains: set[str]) -> None:
    """Add the organisation's claimed domains. Verified at once only for an academic organisation
    that operators linked to the domain on the institutional list, when `actor` has a verified
    address on it; every other claim waits for an operator."""
    refuse_public_domains(domains)
    institutional = set(
        InstitutionalDomain.objects.filter(domain__in=domains, organisation=organisation.pk).values_list(
            "domain", flat=True
        )
    )
    for d in dict.fromkeys(domains):
        verified = organisation.is_academic and d in institutional and d in own_domains
        try:
            with transaction.atomic():
                OrganisationDomain.objects.create(organisation=organisation, domain=d, verified=verified)
        except IntegrityError as exc:  # verified for another organisation at the same moment
            raise PortalError(
                _("The e-mail domain %(domains)s already belongs to another organisation.") % {"domains": d},
                code="domain_taken",
            ) from exc
        audit(organisation=organisation, action=OrganisationAuditLog.Action.DOMAIN_ADDED, actor=actor, new=d)
        if verified:
            audit(organisation=organisation, action=OrganisationAuditLog.Action.DOMAIN_VERIFIED, actor=actor, new=d,
                  reason="linked to this organisation on the institutional domain list")  # fmt: skip


@transaction.atomic
def organisation_domain_verify(*, domain: OrganisationDomain, actor: User | None = None) -> OrganisationDomain:
    """An operator confirms that the organisation owns the domain (audit row). Members with
    verified addresses on it then join (academic organisations)."""
    from portal.services.organisations import membership_join_by_email_domain

    domain = OrganisationDomain.objects.select_for_update().select_related("organisation").get(pk=domain.pk)
    if domain.verified:
        return domain
    refuse_public_domains([domain.domain])
    if OrganisationDomain.objects.filter(domain=domain.domain, verified=True).exists():
        raise PortalError(_("This domain is already verified for another organisation."), code="domain_taken")
    domain.verified = True
    domain.save(update_fields=["verified"])
    audit(organisation=domain.organisation, action=OrganisationAuditLog.Action.DOMAIN_VERIFIED, actor=actor,
          new=domain.domain, reason="verified by an operator")  # fmt: skip
    if domain.organisation.is_academic:
        from allauth.account.models import EmailAddress

        user_ids = EmailAddress.objects.filter(verified=True, email__iendswith="@" + domain.domain).values_list(
            "user_id", flat=True
        )
        for user in User.objects.filter(pk__in=user_ids):
            membership_join_by_email_domain(user=user, domain=domain.domain)
    return domain
