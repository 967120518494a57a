"""Applications to a call, their events, eligibility results and reviews.

Only services in `portal/services/applications.py` set `Application.status`; they follow
`Application.ALLOWED` and write an ApplicationEvent for every transition.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models.nodes import GpuModelField
from portal.models.calls import Call
from portal.models.organisations import Organisation
from portal.validators import MAX_GPU_HOURS, MAX_GPUS


def attachment_path(instance: Application, filename: str) -> str:
    """A random storage name: the applicant's file name is kept in `attachment_name` only, and
    the storage path never leaves the server (downloads go through a permission-checked view)."""
    return timezone.now().strftime(f"applications/%Y/%m/{uuid.uuid4().hex}.pdf")


class ApplicationQuerySet(models.QuerySet):
    def visible_to(self, user) -> ApplicationQuerySet:
        """Current members of the applying organisation who are its principal investigator, in its
        team or owners see an application. Someone removed from the organisation sees nothing,
        whatever role they had on the application."""
        if not user.is_authenticated:
            return self.none()
        from portal.models.organisations import Membership

        member = Membership.objects.filter(organisation=OuterRef("organisation"), user=user)
        in_team = Application.team.through.objects.filter(application=OuterRef("pk"), user=user)
        return self.filter(Exists(member)).filter(
            Q(principal_investigator=user) | Exists(in_team) | Exists(member.filter(role="owner"))
        )

    def reviewable_by(self, user) -> ApplicationQuerySet:
        """Conflict of interest: staff never see an application whose organisation they belong to,
        belonged to, or created, nor one where they are the principal investigator or in the team."""
        from portal.models.audit import OrganisationAuditLog
        from portal.models.organisations import Membership

        org = OuterRef("organisation")
        return self.exclude(principal_investigator=user).exclude(
            Exists(Membership.objects.filter(organisation=org, user=user))
            | Exists(
                OrganisationAuditLog.objects.filter(
                    organisation=org, user=user, action__in=OrganisationAuditLog.MEMBERSHIP_ACTIONS
                )
            )
            | Exists(Application.team.through.objects.filter(application=OuterRef("pk"), user=user))
            # A subquery, not a join to the organisation: the review queue sorts and counts
            # applications alone (issue 13).
            | Q(organisation__in=Organisation.objects.filter(created_by=user).values("pk"))
        )


class Application(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SUBMITTED = "submitted", _("Submitted")
        IN_REVIEW = "in_review", _("In review")
        RETURNED = "returned", _("Returned for changes")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        WITHDRAWN = "withdrawn", _("Withdrawn")

    class DataSensitivity(models.TextChoices):
        PUBLIC = "public", _("Public or open data")
        INTERNAL = "internal", _("Internal, not personal")
        PERSONAL = "personal", _("Personal data (pseudonymised)")
        SENSITIVE = "sensitive", _("Sensitive personal or confidential data")

    class Field(models.TextChoices):
        NLP = "nlp", _("Language models and NLP")
        VISION = "vision", _("Computer vision")
        SCIENCE = "science", _("AI for science")
        HEALTH = "health", _("Health and medicine")
        ROBOTICS = "robotics", _("Robotics and autonomy")
        OTHER = "other", _("Other")

    ALLOWED = {
        Status.DRAFT: {Status.SUBMITTED, Status.WITHDRAWN},
        Status.SUBMITTED: {Status.IN_REVIEW, Status.WITHDRAWN},
        Status.IN_REVIEW: {Status.RETURNED, Status.APPROVED, Status.REJECTED},
        Status.RETURNED: {Status.SUBMITTED, Status.WITHDRAWN},
        Status.APPROVED: set(),
        Status.REJECTED: set(),
        Status.WITHDRAWN: set(),
    }
    EDITABLE = frozenset({Status.DRAFT, Status.RETURNED})

    call = models.ForeignKey(Call, on_delete=models.PROTECT, related_name="applications", verbose_name=_("call"))
    organisation = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, related_name="applications", verbose_name=_("organisation")
    )
    principal_investigator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="applications_led",
        verbose_name=_("principal investigator"),
    )
    team = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="applications_in_team", verbose_name=_("team")
    )
    title = models.CharField(_("title"), max_length=200, blank=True)
    abstract = models.TextField(_("abstract"), max_length=5000, blank=True)
    field = models.CharField(_("research field"), max_length=32, choices=Field.choices, blank=True)
    gpu_model = GpuModelField(db_column="gpu_model", null=True, blank=True)
    gpu_count = models.PositiveSmallIntegerField(
        _("GPUs"), null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(MAX_GPUS)]
    )
    gpu_hours = models.PositiveIntegerField(
        _("GPU-hours requested"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_GPU_HOURS)],
    )
    starts_on = models.DateField(_("start"), null=True, blank=True)
    ends_on = models.DateField(_("end"), null=True, blank=True)
    justification = models.TextField(_("resource justification"), max_length=10000, blank=True)
    software = models.TextField(_("software"), max_length=2000, blank=True)
    data_sensitivity = models.CharField(
        _("data sensitivity"), max_length=16, choices=DataSensitivity.choices, blank=True
    )
    attachment = models.FileField(_("attachment (PDF)"), upload_to=attachment_path, blank=True)
    attachment_name = models.CharField(_("attachment file name"), max_length=255, blank=True, editable=False)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.DRAFT)
    # Set by the form that created the draft: the same form posted twice makes one application.
    client_token = models.UUIDField(_("client token"), unique=True, default=uuid.uuid4, editable=False)
    # Bumped on every save by a service: a stale form (opened before another save) is refused.
    version = models.PositiveIntegerField(_("version"), default=1, editable=False)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)

    objects = ApplicationQuerySet.as_manager()

    class Meta:
        verbose_name = _("application")
        verbose_name_plural = _("applications")
        ordering = ["-submitted_at", "-created_at"]
        permissions = [
            ("decide_application", _("Can approve, reject or return applications")),
            ("override_award_limits", _("Can award beyond the call's cap or remaining budget (with a reason)")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True) | Q(starts_on__isnull=True) | Q(ends_on__gt=models.F("starts_on")),
                name="application_dates_ordered",
            ),
            models.CheckConstraint(
                condition=Q(gpu_hours__isnull=True) | Q(gpu_hours__gt=0), name="application_hours_positive"
            ),
            models.CheckConstraint(
                condition=Q(gpu_count__isnull=True) | Q(gpu_count__gt=0), name="application_gpus_positive"
            ),
            models.CheckConstraint(
                condition=Q(gpu_hours__isnull=True) | Q(gpu_hours__lte=MAX_GPU_HOURS), name="application_hours_max"
            ),
            models.CheckConstraint(
                condition=Q(gpu_count__isnull=True) | Q(gpu_count__lte=MAX_GPUS), name="application_gpus_max"
            ),
        ]
        indexes = [
            models.Index(fields=["call", "status"]),
            models.Index(fields=["organisation", "status"]),
            # The review queue's order: a page of the newest is read from the index, not sorted.
            models.Index(fields=["submitted_at", "id"], name="application_submitted_idx"),
        ]

    def __str__(self) -> str:
        return self.title or _("Untitled application")

    def can_transition(self, new: str) -> bool:
        return new in self.ALLOWED[self.status]

    @property
    def is_editable(self) -> bool:
        return self.status in self.EDITABLE

    def can_withdraw(self) -> bool:
        return self.can_transition(self.Status.WITHDRAWN)

    def is_managed_by(self, user) -> bool:
        """The principal investigator and the organisation's owners edit, submit and withdraw;
        team members only read. All of them only while they belong to the organisation."""
        membership = self.organisation.memberships.filter(user=user).first()
        if membership is None:  # access follows current membership
            return False
        return user.pk == self.principal_investigator_id or membership.role == "owner"


class ApplicationEvent(models.Model):
    """One row per state change (who, when, why) and per message from the reviewers."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    old_status = models.CharField(max_length=16, choices=Application.Status.choices, blank=True)
    new_status = models.CharField(max_length=16, choices=Application.Status.choices)
    reason = models.TextField(_("reason"), blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("application event")
        verbose_name_plural = _("application events")
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.get_old_status_display() or '–'} → {self.get_new_status_display()}"


class EligibilityResult(models.Model):
    """One row per rule per evaluation. The reason is stored as a code with parameters and
    rendered in the reader's language (`portal.eligibility.describe`)."""

    class Outcome(models.TextChoices):
        PASS = "pass", _("Pass")
        WARN = "warn", _("Warning")
        FAIL = "fail", _("Fail")

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="eligibility_results")
    evaluation = models.PositiveIntegerField()
    rule = models.CharField(_("rule"), max_length=64)
    outcome = models.CharField(_("outcome"), max_length=8, choices=Outcome.choices)
    reason_code = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("eligibility result")
        verbose_name_plural = _("eligibility results")
        ordering = ["evaluation", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["application", "evaluation", "rule"], name="eligibility_one_per_rule")
        ]

    def __str__(self) -> str:
        from portal.eligibility import rule_label

        return f"{rule_label(self.rule)}: {self.get_outcome_display()}"

    @property
    def reason(self) -> str:
        """The reason as the applicant reads it on their application page."""
        from portal.eligibility import describe

        return describe(self.reason_code, self.params)

    @property
    def reviewer_reason(self) -> str:
        """The reason as reviewers and approvers read it in the admin (about the applicant)."""
        from portal.eligibility import REVIEWER, describe

        return describe(self.reason_code, self.params, reader=REVIEWER)


class Review(models.Model):
    class Recommendation(models.TextChoices):
        APPROVE = "approve", _("Approve")
        RETURN = "return", _("Return for changes")
        REJECT = "reject", _("Reject")

    SCORE = [MinValueValidator(1), MaxValueValidator(5)]

    application = models.ForeignKey(
        Application, on_delete=models.CASCADE, related_name="reviews", verbose_name=_("application")
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews", verbose_name=_("reviewer")
    )
    merit = models.PositiveSmallIntegerField(_("scientific or business merit"), validators=SCORE)
    feasibility = models.PositiveSmallIntegerField(_("feasibility"), validators=SCORE)
    national_priority = models.PositiveSmallIntegerField(_("national priority"), validators=SCORE)
    resource_justification = models.PositiveSmallIntegerField(_("resource justification"), validators=SCORE)
    recommendation = models.CharField(_("recommendation"), max_length=16, choices=Recommendation.choices)
    comment = models.TextField(_("comment"), max_length=5000, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        verbose_name = _("review")
        verbose_name_plural = _("reviews")
        ordering = ["application", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["application", "reviewer"], name="review_one_per_reviewer"),
            *[
                models.CheckConstraint(condition=Q(**{f"{f}__gte": 1, f"{f}__lte": 5}), name=f"review_{f}_1_to_5")
                for f in ("merit", "feasibility", "national_priority", "resource_justification")
            ],
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} → {self.application}"
