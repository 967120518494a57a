"""Accounts and organisations: who may act for which organisation."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import get_language, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from portal.validators import validate_business_registration_number


class UserManager(BaseUserManager["User"]):
    """Users are identified by e-mail alone; there is no username."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("An e-mail address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    username = None
    email = models.EmailField(_("e-mail address"), unique=True)
    # The language of the last page the user saw; e-mails to them are written in it.
    language = models.CharField(_("language"), max_length=8, choices=settings.LANGUAGES, default="ko")

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


class OrganisationQuerySet(models.QuerySet):
    def visible_to(self, user) -> OrganisationQuerySet:
        """Organisations the user is a member of; everything else answers 404."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(memberships__user=user)


class Organisation(models.Model):
    class Kind(models.TextChoices):
        UNIVERSITY = "university", _("University")
        RESEARCH_INSTITUTE = "research_institute", _("Research institute")
        PUBLIC_AGENCY = "public_agency", _("Public agency")
        STARTUP = "startup", _("Startup")
        SME = "sme", _("Small or medium enterprise")
        ENTERPRISE = "enterprise", _("Enterprise")

    class PriceTier(models.TextChoices):
        ACADEMIC = "academic", _("Academic")
        PUBLIC = "public", _("Public")
        STARTUP = "startup", _("Startup")
        ENTERPRISE = "enterprise", _("Enterprise")

    ACADEMIC_KINDS = frozenset({Kind.UNIVERSITY, Kind.RESEARCH_INSTITUTE})
    COMPANY_KINDS = frozenset({Kind.STARTUP, Kind.SME, Kind.ENTERPRISE})
    TIER_BY_KIND = {
        Kind.UNIVERSITY: PriceTier.ACADEMIC,
        Kind.RESEARCH_INSTITUTE: PriceTier.ACADEMIC,
        Kind.PUBLIC_AGENCY: PriceTier.PUBLIC,
        Kind.STARTUP: PriceTier.STARTUP,
        Kind.SME: PriceTier.ENTERPRISE,
        Kind.ENTERPRISE: PriceTier.ENTERPRISE,
    }

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    name_ko = models.CharField(_("name (Korean)"), max_length=200)
    name_en = models.CharField(_("name (English)"), max_length=200)

    class BrnStatus(models.TextChoices):
        # A university or institute has no number: the status does not apply (not "none").
        NONE = "", pgettext_lazy("business number status", "Not applicable")
        CLAIMED = "claimed", _("Claimed, not yet confirmed")
        VERIFIED = "verified", _("Confirmed by the centre")

    # Several organisations may claim one number (a squatter cannot block the real company);
    # only one holds it confirmed, and only an operator confirms (services/business_numbers.py).
    business_registration_number = models.CharField(
        _("business registration number"),
        max_length=10,
        null=True,
        blank=True,
        validators=[validate_business_registration_number],
        help_text=_("10 digits, required for companies."),
    )
    brn_status = models.CharField(
        _("business registration number status"), max_length=16, choices=BrnStatus.choices, blank=True, default=""
    )
    brn_document = models.FileField(
        _("business registration certificate (PDF)"), upload_to="business-registration/%Y/", blank=True
    )
    founded_on = models.DateField(_("founded on"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("created by"),
    )  # fmt: skip

    objects = OrganisationQuerySet.as_manager()

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        ordering = ["name_en"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(business_registration_number__regex=r"^[0-9]{10}$")
                | models.Q(business_registration_number__isnull=True),
                name="organisation_brn_ten_digits",
            ),
            models.UniqueConstraint(
                fields=["business_registration_number"],
                condition=models.Q(brn_status="verified"),
                name="organisation_brn_verified_unique",
            ),
            models.CheckConstraint(
                condition=models.Q(brn_status="") | models.Q(business_registration_number__isnull=False),
                name="organisation_brn_status_needs_number",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.name_ko if (get_language() or "ko").startswith("ko") else self.name_en

    @property
    def price_tier(self) -> str:
        return self.TIER_BY_KIND[self.kind]

    @property
    def price_tier_label(self) -> str:
        return self.PriceTier(self.price_tier).label

    @property
    def is_academic(self) -> bool:
        return self.kind in self.ACADEMIC_KINDS

    @property
    def is_company(self) -> bool:
        return self.kind in self.COMPANY_KINDS

    @property
    def brn_verified(self) -> bool:
        return self.brn_status == self.BrnStatus.VERIFIED

    def formatted_business_registration_number(self) -> str:
        n = self.business_registration_number or ""
        return f"{n[:3]}-{n[3:5]}-{n[5:]}" if len(n) == 10 else n


class OrganisationDomain(models.Model):
    """An e-mail domain of an organisation. A verified domain belongs to one organisation only,
    and a user whose verified e-mail is on it joins that (academic) organisation automatically."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="domains", verbose_name=_("organisation")
    )
    domain = models.CharField(_("domain"), max_length=253)
    verified = models.BooleanField(_("verified"), default=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("e-mail domain")
        verbose_name_plural = _("e-mail domains")
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "domain"], name="orgdomain_unique_per_org"),
            models.UniqueConstraint(
                fields=["domain"], condition=models.Q(verified=True), name="orgdomain_verified_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.domain


class InstitutionalDomain(models.Model):
    """A domain operators know to belong to a university or institute (kept in the admin). Only
    operators link it to the organisation that is that institution: a claim of the domain by
    that organisation, from a user with a verified address on it, is verified at once. A claim by
    any other organisation (a student's "Student Club" on the university's domain) waits for an
    operator like any other domain."""

    domain = models.CharField(_("domain"), max_length=253, unique=True)
    institution = models.CharField(_("institution"), max_length=200)
    organisation = models.ForeignKey(
        "portal.Organisation", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("organisation"), help_text=_("Set by operators: the organisation that is this institution."),
    )  # fmt: skip
    note = models.TextField(_("note"), blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("institutional domain")
        verbose_name_plural = _("institutional domains")
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        MEMBER = "member", _("Member")
        BILLING = "billing", _("Billing")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("user")
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="memberships", verbose_name=_("organisation")
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ["organisation", "user__email"]
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="membership_unique")]
        # An organisation's latest members (its admin page and filtered membership list, newest
        # first): without it PostgreSQL walked every membership backwards by primary key.
        indexes = [models.Index(fields=["organisation", "id"], name="membership_org_latest_idx")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation} ({self.get_role_display()})"


class Invitation(models.Model):
    """An invitation by e-mail. The link carries a signed, timestamped id: it expires after
    INVITATION_MAX_AGE_DAYS and works once (accepted_at is set under a row lock)."""

    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="invitations", verbose_name=_("organisation")
    )
    email = models.EmailField(_("e-mail address"))
    role = models.CharField(_("role"), max_length=16, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+", verbose_name=_("invited by")
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    accepted_at = models.DateTimeField(_("accepted at"), null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("accepted by"),
    )

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.organisation}"

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(days=settings.INVITATION_MAX_AGE_DAYS)

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or timezone.now()) >= self.expires_at
