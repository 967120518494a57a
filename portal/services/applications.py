"""Applications: drafts, submission with eligibility, review, and the decision.

Every state change goes through `_transition`, which follows Application.ALLOWED on a locked
row, writes an ApplicationEvent and mails the applicant after commit. Approval locks the call's
budget row for the GPU model, so concurrent approvals can never award more than the budget.
"""

from __future__ import annotations

import os
from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from allocations.models import GpuModel, Grant
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
    OrganisationAuditLog,
    Review,
    User,
    audit,
)
from portal.services.organisations import verified_emails
from portal.validators import MAX_GPU_HOURS, MAX_GPUS

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
    return calls_remaining_gpu_hours([call])[call.pk]


def calls_remaining_gpu_hours(calls: list[Call]) -> dict[int, dict[str, int]]:
    """Call id → GPU model → GPU-hours it can still award, for many calls in one grouped query
    (plus the budgets, unless prefetched): a page of calls costs the same for 2 calls or 20."""
    committed: dict[tuple[int, str], int] = {
        (call_id, model): total
        for call_id, model, total in Grant.objects.filter(
            application__call__in=[c.pk for c in calls], status__in=Grant.COMMITTED
        )
        .values("application__call", "gpu_model")
        .annotate(total=Sum("gpu_hours"))
        .values_list("application__call", "gpu_model", "total")
    }
    return {
        c.pk: {b.gpu_model_id: b.gpu_hours - committed.get((c.pk, b.gpu_model_id), 0) for b in c.budgets.all()}
        for c in calls
    }


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
    model = GpuModel.objects.filter(pk=application.gpu_model_id).first()
    return eligibility.Facts(
        today=today or timezone.localdate(),
        applicant_email=applicant.email,
        applicant_email_verified=applicant.email.lower() in emails,
        org_kind=org.kind,
        org_verified_domains=frozenset(org.domains.filter(verified=True).values_list("domain", flat=True)),
        org_business_registration_number=org.business_registration_number,
        org_brn_verified=org.brn_verified,
        org_founded_on=org.founded_on,
        org_has_overdue_invoice=organisation_has_overdue_invoice(org.pk),
        call_kinds=frozenset(call.eligible_kinds),
        call_cap_gpu_hours=call.cap_gpu_hours,
        call_window=(call.allocation_starts_on, call.allocation_ends_on),
        call_max_startup_age_years=call.max_startup_age_years,
        call_budgets=call_remaining_gpu_hours(call),
        gpu_model=application.gpu_model_id or "",
        gpu_model_name=model.name if model else "",
        gpus_per_node=model.gpus_per_node if model else 0,
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


def _transition(
    application: Application, new: str, *, actor: User | None, reason: str = "", notify: bool = True
) -> Application:
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
    if notify:
        _notify(application, event)
    return application


def _review_if_submitted(application: Application, actor: User) -> None:
    """An approver decides a submitted application in one step: it passes through `in_review`
    (an event on the timeline, no e-mail of its own) before the decision."""
    if application.status == S.SUBMITTED:
        _transition(application, S.IN_REVIEW, actor=actor, notify=False)


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


def application_by_client_token(*, user: User, client_token) -> Application | None:
    """The application that `user` made from the form carrying this token; another user's token
    finds nothing."""
    return Application.objects.filter(client_token=client_token, principal_investigator=user).first()


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
        existing = application_by_client_token(user=user, client_token=client_token)
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
                attachment_name=_attachment_name(attachment),
                **({"client_token": client_token} if client_token else {}),
                **fields,
            )
    except IntegrityError:
        # The same form posted twice at the same moment: the other request made the draft. A
        # token of another user's application is refused, never followed to their draft.
        existing = application_by_client_token(user=user, client_token=client_token)
        if existing is None:
            raise PortalError(_("This form can no longer be used. Open a new one."), code="token_taken") from None
        return existing
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
        _replace_attachment(application, attachment)
    application.version += 1
    application.updated_at = timezone.now()
    application.save()
    application.team.set(team)
    return application


def _attachment_name(upload) -> str:
    """The applicant's own file name, shown back to them instead of the storage path."""
    return os.path.basename(getattr(upload, "name", "") or "")[:255]


def _replace_attachment(application: Application, upload) -> None:
    """A new upload replaces the file; the old one is deleted from storage once the change is
    committed (a rolled-back save keeps it)."""
    old = application.attachment.name if application.attachment else ""
    storage = application.attachment.storage
    application.attachment = upload
    application.attachment_name = _attachment_name(upload)
    if old:
        transaction.on_commit(lambda: storage.delete(old))


def missing_for_submission(application: Application) -> list[str]:
    return [
        str(Application._meta.get_field(f).verbose_name)
        for f in REQUIRED_FOR_SUBMISSION
        if getattr(application, Application._meta.get_field(f).attname) in (None, "")
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
    """Only the principal investigator or an owner, and only while they belong to the organisation."""
    application = _lock(application)
    if not application.is_managed_by(actor):
        raise PortalError(
            _("Only the principal investigator or an owner of the organisation can do this."), code="not_manager"
        )
    return _transition(application, S.WITHDRAWN, actor=actor, reason=reason)


# -- reviewers and approvers ------------------------------------------------------------------


def _require_no_conflict(application: Application, staff: User) -> None:
    """The rule of `Application.objects.reviewable_by`: no past or present member of the applying
    organisation, nor its creator, the principal investigator or a team member, reviews or decides."""
    if not Application.objects.reviewable_by(staff).filter(pk=application.pk).exists():
        raise PortalError(
            _(
                "You belong or belonged to the applicant organisation, or work on this application, "
                "and cannot review or decide it."
            ),
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
    _review_if_submitted(application, actor)
    return _transition(application, S.RETURNED, actor=actor, reason=_require_reason(reason))


@transaction.atomic
def application_reject(*, application: Application, actor: User, reason: str) -> Application:
    application = _lock(application)
    _require_no_conflict(application, actor)
    _review_if_submitted(application, actor)
    return _transition(application, S.REJECTED, actor=actor, reason=_require_reason(reason))


def award_outside_window(call: Call, starts_on: date, ends_on: date) -> bool:
    return starts_on < call.allocation_starts_on or ends_on > call.allocation_ends_on


def _check_award_bounds(gpu_count: int, gpu_hours: int, starts_on: date, ends_on: date) -> None:
    if not (0 < gpu_hours <= MAX_GPU_HOURS) or not (0 < gpu_count <= MAX_GPUS):
        raise PortalError(
            _("GPU-hours must be between 1 and %(max_hours)s, GPUs between 1 and %(max_gpus)s.")
            % {"max_hours": f"{MAX_GPU_HOURS:,}", "max_gpus": MAX_GPUS},
            code="out_of_bounds",
        )
    if ends_on <= starts_on:
        raise PortalError(_("The end must be after the start."), code="dates")


@transaction.atomic
def application_approve(
    *,
    application: Application,
    actor: User,
    gpu_model: GpuModel | str,
    gpu_count: int,
    gpu_hours: int,
    starts_on: date,
    ends_on: date,
    override_reason: str = "",
    reason: str = "",
    confirm_outside_window: bool = False,
) -> Grant:
    """Approve with the (possibly edited) award and create the Grant in `pending`.

    The cap per application and the call's remaining budget hold here as at submission. Going
    beyond either is an override: it needs the `portal.override_award_limits` permission and a
    reason, and it is logged (audit row and the grant's override reason). An award outside the
    call's allocation window needs `confirm_outside_window`.

    The call's budget row for the GPU model is locked first: two approvals in the same call
    queue here, and the second sees the first's grant when it computes what is left."""
    application = _lock(application)
    _require_no_conflict(application, actor)
    _review_if_submitted(application, actor)  # rolled back with the rest if the approval fails
    if not application.can_transition(S.APPROVED):
        raise PortalError(
            _("This application is “%(status)s” and cannot be approved.")
            % {"status": application.get_status_display()},
            code="bad_transition",
        )
    call = application.call
    budget = (
        CallBudget.objects.select_for_update(of=("self",))
        .select_related("gpu_model")
        .filter(call=call, gpu_model=gpu_model)
        .first()
    )
    if budget is None:
        raise PortalError(_("The call does not offer this GPU model."), code="model_not_offered")
    _check_award_bounds(gpu_count, gpu_hours, starts_on, ends_on)
    if gpu_count > budget.gpu_model.gpus_per_node:
        raise PortalError(_("That many GPUs do not fit on one node."), code="count_too_large")
    if award_outside_window(call, starts_on, ends_on) and not confirm_outside_window:
        raise PortalError(
            _("The award's dates lie outside the call's allocation window (%(start)s – %(end)s). Confirm to go ahead.")
            % {"start": call.allocation_starts_on, "end": call.allocation_ends_on},
            code="outside_window",
        )
    remaining = call_remaining_gpu_hours(call)[budget.gpu_model_id]
    excess = []
    if gpu_hours > call.cap_gpu_hours:
        excess.append(
            _("The award of %(hours)s GPU-hours exceeds the call's cap of %(cap)s GPU-hours per application.")
            % {"hours": gpu_hours, "cap": call.cap_gpu_hours}
        )
    if gpu_hours > remaining:
        excess.append(
            _("The award of %(hours)s GPU-hours exceeds the %(remaining)s GPU-hours left in the call's budget.")
            % {"hours": gpu_hours, "remaining": remaining}
        )
    override_reason = (override_reason or "").strip()
    if excess:
        if not actor.has_perm("portal.override_award_limits"):
            raise PortalError(
                " ".join(
                    [*map(str, excess), str(_("Reduce the award: only an override-permitted approver can exceed it."))]
                ),
                code="over_budget" if gpu_hours > remaining else "over_cap",
            )
        if not override_reason:
            raise PortalError(
                " ".join([*map(str, excess), str(_("Give an override reason to exceed it."))]),
                code="override_reason_required",
            )
    grant = grant_create(
        application=application,
        actor=actor,
        gpu_model=gpu_model,
        gpu_count=gpu_count,
        gpu_hours=gpu_hours,
        starts_on=starts_on,
        ends_on=ends_on,
        budget_override_reason=override_reason if excess else "",
    )
    if excess:
        audit(
            organisation=application.organisation, action=OrganisationAuditLog.Action.AWARD_OVERRIDE, actor=actor,
            old=f"cap {call.cap_gpu_hours}, remaining {remaining}", new=f"application {application.pk}: {gpu_hours}",
            reason=override_reason,
        )  # fmt: skip
    _transition(application, S.APPROVED, actor=actor, reason=reason)
    return grant
