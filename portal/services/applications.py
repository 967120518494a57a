"""Applications: drafts, submission with eligibility, review, and the decision.

Every state change goes through `_transition`, which follows Application.ALLOWED on a locked
row, writes an ApplicationEvent and mails the applicant after commit. Approval locks the call's
budget row for the GPU model, so concurrent approvals can never award more than the budget.
"""

from __future__ import annotations

from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models import GPUS_PER_NODE, Grant
from allocations.services.grants import grant_create
from billing.services import organisation_has_overdue_invoice
from portal import eligibility
from portal.errors import PortalError
from portal.mail import mail_render_and_enqueue
from portal.models import (
    Application,
    ApplicationEvent,
    Call,
    CallBudget,
    EligibilityResult,
    Membership,
    Organisation,
    Review,
    User,
)
from portal.services.organisations import verified_emails

S = Application.Status
# Fields that must be filled before submission (drafts may leave any of them empty).
REQUIRED_FOR_SUBMISSION = [
    "title",
    "abstract",
    "field",
    "gpu_model",
    "gpu_count",
    "gpu_hours",
    "starts_on",
    "ends_on",
    "justification",
    "data_sensitivity",
]
DRAFT_FIELDS = [*REQUIRED_FOR_SUBMISSION, "software"]


class ApplicationIneligible(PortalError):
    """Submission refused; the evaluation that says why is stored and shown on the page."""

    def __init__(self) -> None:
        super().__init__(
            _("The application does not meet every rule of the call yet. Fix what is marked below."),
            code="ineligible",
        )


# -- reads used by services, views and the admin --------------------------------------------


def call_remaining_gpu_hours(call: Call) -> dict[str, int]:
    """GPU model → GPU-hours the call can still award (budget minus committed grants)."""
    committed = dict(
        Grant.objects.filter(application__call=call, status__in=Grant.COMMITTED)
        .values("gpu_model")
        .annotate(total=Sum("gpu_hours"))
        .values_list("gpu_model", "total")
    )
    return {b.gpu_model: b.gpu_hours - committed.get(b.gpu_model, 0) for b in call.budgets.all()}


def latest_eligibility(application: Application) -> list[EligibilityResult]:
    latest = application.eligibility_results.aggregate(m=Max("evaluation"))["m"]
    if latest is None:
        return []
    return list(application.eligibility_results.filter(evaluation=latest))


def eligibility_facts(application: Application, *, today: date | None = None) -> eligibility.Facts:
    org = application.organisation
    call = application.call
    applicant = application.principal_investigator
    emails = verified_emails(applicant)
    return eligibility.Facts(
        today=today or timezone.localdate(),
        applicant_email=applicant.email,
        applicant_email_verified=applicant.email.lower() in emails,
        org_kind=org.kind,
        org_verified_domains=frozenset(org.domains.filter(verified=True).values_list("domain", flat=True)),
        org_business_registration_number=org.business_registration_number,
        org_founded_on=org.founded_on,
        org_has_overdue_invoice=organisation_has_overdue_invoice(org.pk),
        call_kinds=frozenset(call.eligible_kinds),
        call_cap_gpu_hours=call.cap_gpu_hours,
        call_window=(call.allocation_starts_on, call.allocation_ends_on),
        call_max_startup_age_years=call.max_startup_age_years,
        call_budgets=call_remaining_gpu_hours(call),
        gpu_model=application.gpu_model,
        gpu_count=application.gpu_count or 0,
        gpu_hours=application.gpu_hours or 0,
        starts_on=application.starts_on,
        ends_on=application.ends_on,
    )


# -- internals --------------------------------------------------------------------------------


def _lock(application: Application) -> Application:
    return Application.objects.select_for_update().select_related("call", "organisation").get(pk=application.pk)


def _notify(application: Application, event: ApplicationEvent) -> None:
    """Mail the principal investigator in their language, after commit (RQ enqueues on commit)."""
    recipient = application.principal_investigator
    mail_render_and_enqueue(
        template="application_status",
        to=recipient.email,
        language=recipient.language,
        context={"application": application, "event": event},
    )


def _transition(application: Application, new: str, *, actor: User | None, reason: str = "") -> Application:
    if not application.can_transition(new):
        raise PortalError(
            _("This application is “%(status)s”; that action is no longer possible.")
            % {"status": application.get_status_display()},
            code="bad_transition",
        )
    old = application.status
    application.status = new
    now = timezone.now()
    application.updated_at = now
    if new == S.SUBMITTED:
        application.submitted_at = now
    if new in {S.APPROVED, S.REJECTED}:
        application.decided_at = now
    application.version += 1
    application.save(update_fields=["status", "updated_at", "submitted_at", "decided_at", "version"])
    event = ApplicationEvent.objects.create(
        application=application, actor=actor, old_status=old, new_status=new, reason=reason
    )
    _notify(application, event)
    return application


def _require_member(user: User, organisation: Organisation) -> None:
    if not Membership.objects.filter(user=user, organisation=organisation).exists():
        raise PortalError(_("You are not a member of this organisation."), code="not_member")


def _check_team(organisation: Organisation, team: list[User]) -> None:
    members = set(Membership.objects.filter(organisation=organisation).values_list("user_id", flat=True))
    outsiders = [u.email for u in team if u.pk not in members]
    if outsiders:
        raise PortalError(
            _("Team members must belong to the organisation: %(emails)s.") % {"emails": ", ".join(outsiders)},
            code="team_outsider",
        )


# -- applicants -------------------------------------------------------------------------------


@transaction.atomic
def application_create_draft(
    *,
    call: Call,
    organisation: Organisation,
    user: User,
    data: dict,
    team: list[User],
    attachment=None,
    client_token=None,
) -> Application:
    """A new draft. The form's client token makes a repeated post return the first draft
    instead of creating a second one."""
    if client_token is not None:
        existing = Application.objects.filter(client_token=client_token, principal_investigator=user).first()
        if existing is not None:
            return existing
    _require_member(user, organisation)
    if not Call.objects.open().filter(pk=call.pk).exists():
        raise PortalError(_("This call is not open for applications."), code="call_closed")
    _check_team(organisation, team)
    fields = {k: v for k, v in data.items() if k in DRAFT_FIELDS}
    try:
        with transaction.atomic():
            application = Application.objects.create(
                call=call,
                organisation=organisation,
                principal_investigator=user,
                attachment=attachment or "",
                **({"client_token": client_token} if client_token else {}),
                **fields,
            )
    except IntegrityError:
        # The same form posted twice at the same moment: the other request made the draft.
        return Application.objects.get(client_token=client_token)
    application.team.set(team)
    ApplicationEvent.objects.create(application=application, actor=user, old_status="", new_status=S.DRAFT)
    return application


@transaction.atomic
def application_update(
    *, application: Application, user: User, data: dict, team: list[User], attachment=None, expected_version: int
) -> Application:
    """Save changes to a draft or a returned application. A form opened before another save
    (a stale version) is refused instead of silently overwriting."""
    application = _lock(application)
    if not application.is_editable:
        raise PortalError(
            _("This application is “%(status)s” and can no longer be edited.")
            % {"status": application.get_status_display()},
            code="not_editable",
        )
    if application.version != expected_version:
        raise PortalError(
            _("The application was changed since you opened this form. Reload it and apply your changes again."),
            code="stale",
        )
    _check_team(application.organisation, team)
    for key, value in data.items():
        if key in DRAFT_FIELDS:
            setattr(application, key, value)
    if attachment is not None:
        application.attachment = attachment
    application.version += 1
    application.updated_at = timezone.now()
    application.save()
    application.team.set(team)
    return application


def missing_for_submission(application: Application) -> list[str]:
    return [
        str(Application._meta.get_field(f).verbose_name)
        for f in REQUIRED_FOR_SUBMISSION
        if getattr(application, f) in (None, "")
    ]


def application_submit(*, application: Application, actor: User, expected_version: int | None = None) -> Application:
    """Run every eligibility rule, store the results, and submit when none fails. On a fail the
    results are kept (committed) and ApplicationIneligible is raised; the application stays as it was."""
    with transaction.atomic():
        application = _lock(application)
        if expected_version is not None and application.version != expected_version:
            raise PortalError(
                _("The application was changed since you opened this form. Reload it and try again."), code="stale"
            )
        if not application.can_transition(S.SUBMITTED):
            raise PortalError(
                _("This application is “%(status)s” and cannot be submitted.")
                % {"status": application.get_status_display()},
                code="bad_transition",
            )
        if missing := missing_for_submission(application):
            raise PortalError(
                _("Fill in before submitting: %(fields)s.") % {"fields": ", ".join(missing)}, code="incomplete"
            )
        results = application_evaluate(application=application)
        if not any(r.outcome == EligibilityResult.Outcome.FAIL for r in results):
            return _transition(application, S.SUBMITTED, actor=actor)
    raise ApplicationIneligible()


def application_evaluate(*, application: Application) -> list[EligibilityResult]:
    """Store one new evaluation of every rule and return its rows."""
    evaluation = (application.eligibility_results.aggregate(m=Max("evaluation"))["m"] or 0) + 1
    return EligibilityResult.objects.bulk_create(
        EligibilityResult(
            application=application,
            evaluation=evaluation,
            rule=r.rule,
            outcome=r.outcome,
            reason_code=r.code,
            params=r.params,
        )
        for r in eligibility.evaluate(eligibility_facts(application))
    )


@transaction.atomic
def application_withdraw(*, application: Application, actor: User, reason: str = "") -> Application:
    return _transition(_lock(application), S.WITHDRAWN, actor=actor, reason=reason)


# -- reviewers and approvers ------------------------------------------------------------------


def _require_no_conflict(application: Application, staff: User) -> None:
    if Membership.objects.filter(user=staff, organisation_id=application.organisation_id).exists():
        raise PortalError(
            _("You belong to the applicant organisation and cannot review or decide this application."),
            code="conflict_of_interest",
        )


@transaction.atomic
def application_start_review(*, application: Application, actor: User) -> Application:
    application = _lock(application)
    _require_no_conflict(application, actor)
    return _transition(application, S.IN_REVIEW, actor=actor)


@transaction.atomic
def review_save(
    *,
    application: Application,
    reviewer: User,
    merit: int,
    feasibility: int,
    national_priority: int,
    resource_justification: int,
    recommendation: str,
    comment: str = "",
) -> Review:
    """Create or update the reviewer's review. The first review moves a submitted application
    into review."""
    application = _lock(application)
    _require_no_conflict(application, reviewer)
    if application.status not in {S.SUBMITTED, S.IN_REVIEW}:
        raise PortalError(_("Only submitted applications or applications in review can be reviewed."), code="state")
    review, _created = Review.objects.update_or_create(
        application=application,
        reviewer=reviewer,
        defaults={
            "merit": merit,
            "feasibility": feasibility,
            "national_priority": national_priority,
            "resource_justification": resource_justification,
            "recommendation": recommendation,
            "comment": comment,
            "updated_at": timezone.now(),
        },
    )
    if application.status == S.SUBMITTED:
        _transition(application, S.IN_REVIEW, actor=reviewer)
    return review


def _require_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Give a reason: the applicant will read it."), code="reason_required")
    return reason


@transaction.atomic
def application_return(*, application: Application, actor: User, reason: str) -> Application:
    application = _lock(application)
    _require_no_conflict(application, actor)
    return _transition(application, S.RETURNED, actor=actor, reason=_require_reason(reason))


@transaction.atomic
def application_reject(*, application: Application, actor: User, reason: str) -> Application:
    application = _lock(application)
    _require_no_conflict(application, actor)
    return _transition(application, S.REJECTED, actor=actor, reason=_require_reason(reason))


@transaction.atomic
def application_approve(
    *,
    application: Application,
    actor: User,
    gpu_model: str,
    gpu_count: int,
    gpu_hours: int,
    starts_on: date,
    ends_on: date,
    override_reason: str = "",
    reason: str = "",
) -> Grant:
    """Approve with the (possibly edited) award and create the Grant in `pending`.

    The call's budget row for the GPU model is locked first: two approvals in the same call
    queue here, and the second sees the first's grant when it computes what is left."""
    application = _lock(application)
    _require_no_conflict(application, actor)
    if not application.can_transition(S.APPROVED):
        raise PortalError(
            _("This application is “%(status)s” and cannot be approved.")
            % {"status": application.get_status_display()},
            code="bad_transition",
        )
    budget = CallBudget.objects.select_for_update().filter(call=application.call, gpu_model=gpu_model).first()
    if budget is None:
        raise PortalError(_("The call does not offer this GPU model."), code="model_not_offered")
    if gpu_hours <= 0 or gpu_count <= 0:
        raise PortalError(_("GPU-hours and GPUs must be positive."), code="not_positive")
    if gpu_count > GPUS_PER_NODE.get(gpu_model, 0):
        raise PortalError(_("That many GPUs do not fit on one node."), code="count_too_large")
    if ends_on <= starts_on:
        raise PortalError(_("The end must be after the start."), code="dates")
    remaining = call_remaining_gpu_hours(application.call)[gpu_model]
    override_reason = (override_reason or "").strip()
    if gpu_hours > remaining and not override_reason:
        raise PortalError(
            _(
                "The award of %(hours)s GPU-hours exceeds the %(remaining)s GPU-hours left in the call's budget. "
                "Reduce it or give an override reason."
            )
            % {"hours": gpu_hours, "remaining": remaining},
            code="over_budget",
        )
    grant = grant_create(
        application=application,
        actor=actor,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpu_hours=gpu_hours,
        starts_on=starts_on,
        ends_on=ends_on,
        budget_override_reason=override_reason if gpu_hours > remaining else "",
    )
    _transition(application, S.APPROVED, actor=actor, reason=reason)
    return grant
