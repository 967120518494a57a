"""The ministry's review queue in the Django admin.

Reviewers and approvers never see an application of an organisation they belong to: the
queryset excludes it (so its pages are 404 here) and every service re-checks. Status is
read-only; reviews and decisions go through the services on their own pages.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import Avg, Count, Exists, F, OuterRef, QuerySet
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from allocations.admin_gpu_models import GpuModelListFilter
from allocations.gpu_models import gpu_model_label
from allocations.models import Grant
from allocations.services.usage import organisation_usage
from billing.services import organisation_unpaid_invoices
from portal import charts
from portal.admin_numbers import grouped_field
from portal.admin_scale import ScaledAdmin, ScaledChangeList, choice_display, format_rows, local_time, readonly_table
from portal.attachments import attachment_response
from portal.errors import PortalError
from portal.models import Application, ApplicationEvent, EligibilityResult, Review
from portal.services import applications as svc
from portal.validators import MAX_GPU_HOURS, MAX_GPUS

SCORES = ["merit", "feasibility", "national_priority", "resource_justification"]
# Reviews and decisions are possible on these; a decision on a submitted one starts its review.
REVIEWABLE = {Application.Status.SUBMITTED, Application.Status.IN_REVIEW}
# Columns computed from the reviews: for the page's rows only, unless the list is sorted by one.
REVIEW_COLUMNS = frozenset({"review_count", "average_score"})


def review_stats(application_ids: list[int]) -> dict[int, tuple[int, float | None]]:
    """Application id → (number of reviews, average total score), in one grouped query over
    the given applications' reviews."""
    total = F("merit") + F("feasibility") + F("national_priority") + F("resource_justification")
    rows = (
        Review.objects.filter(application_id__in=application_ids)
        .values("application_id")
        .annotate(n=Count("pk"), avg=Avg(total))
        .values_list("application_id", "n", "avg")
    )
    return {pk: (n, avg) for pk, n, avg in rows}


def _concrete(model, relation: str) -> list:
    """The concrete fields of the model that `relation` points to (loaded whole, as a join would)."""
    return list(model._meta.get_field(relation).related_model._meta.concrete_fields)


class ApplicationChangeList(ScaledChangeList):
    """Counting and averaging the reviews of every matching row before the LIMIT made
    PostgreSQL group all of them (a 32 MB sort at national scale): the page's rows get their
    numbers afterwards, in one query."""

    def get_queryset(self, request: HttpRequest, exclude_parameters=None) -> QuerySet[Application]:
        # No joins before the LIMIT: with 2,000 pending rows PostgreSQL joined every one of them
        # to its call, organisation and applicant before sorting. The page's rows get them after.
        return super().get_queryset(request, exclude_parameters).select_related(None)

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)  # evaluates (and caches) the page
        # The page's call, organisation and applicant in one joined query (not one per relation).
        related = ("call", "organisation", "principal_investigator")
        joined = (
            Application.objects.filter(pk__in=[a.pk for a in rows])
            .select_related(*related)
            .only("pk", *(f"{name}__{f.attname}" for name in related for f in _concrete(Application, name)))
        )
        by_pk = {a.pk: a for a in joined}
        for a in rows:
            if a.pk in by_pk:
                for name in related:
                    setattr(a, name, getattr(by_pk[a.pk], name))
        stats = review_stats([a.pk for a in rows])
        for a in rows:
            if not hasattr(a, "_review_count"):
                a._review_count, a._average = stats.get(a.pk, (0, None))


class ReviewForm(forms.ModelForm):
    class Meta:
        model = Review
        fields = ["merit", "feasibility", "national_priority", "resource_justification", "recommendation", "comment"]
        widgets = {f: forms.RadioSelect(choices=[(i, i) for i in range(1, 6)]) for f in fields[:4]}


class DecisionForm(forms.Form):
    ACTIONS = [
        ("approve", _("Approve")),
        ("return", _("Return for changes")),
        ("reject", _("Reject")),
    ]
    action = forms.ChoiceField(label=_("Decision"), choices=ACTIONS, widget=forms.RadioSelect)
    gpu_model = forms.ChoiceField(label=_("GPU model"), choices=(), required=False)
    gpu_count = forms.IntegerField(label=_("GPUs"), min_value=1, max_value=MAX_GPUS, required=False)
    gpu_hours = forms.IntegerField(
        label=_("Subsidised GPU-hours"), min_value=1, max_value=MAX_GPU_HOURS, required=False
    )
    starts_on = forms.DateField(label=_("Start"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    ends_on = forms.DateField(label=_("End"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    confirm_outside_window = forms.BooleanField(
        label=_("Award outside the call's allocation window"),
        required=False,
        help_text=_("Tick to confirm dates before or after the call's allocation window."),
    )
    override_reason = forms.CharField(
        label=_("Override reason"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_(
            "Only for an award beyond the call's cap or remaining budget: needs the override permission and is logged."
        ),
        max_length=2000,
    )
    reason = forms.CharField(
        label=_("Message to the applicant"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Required to reject or return; shown to the applicant and sent by e-mail."),
        max_length=5000,
    )

    def __init__(self, *args, call, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.call = call
        offered = set(call.budgets.values_list("gpu_model", flat=True))
        self.fields["gpu_model"].choices = [(v, gpu_model_label(v)) for v in sorted(offered)]

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action == "approve":
            for name in ("gpu_model", "gpu_count", "gpu_hours", "starts_on", "ends_on"):
                if data.get(name) in (None, "") and name not in self.errors:
                    self.add_error(name, _("Required to approve."))
            starts, ends = data.get("starts_on"), data.get("ends_on")
            if starts and ends and ends <= starts:
                self.add_error("ends_on", _("The end must be after the start."))
            elif starts and ends and svc.award_outside_window(self.call, starts, ends):
                if not data.get("confirm_outside_window"):
                    self.add_error(
                        "confirm_outside_window",
                        _(
                            "The dates lie outside the call's allocation window (%(start)s – %(end)s). "
                            "Tick to confirm or change them."
                        )
                        % {"start": self.call.allocation_starts_on, "end": self.call.allocation_ends_on},
                    )
        elif action in {"return", "reject"} and not (data.get("reason") or "").strip():
            self.add_error("reason", _("Give a reason: the applicant will read it."))
        return data


ELIGIBILITY_FIELDS = ("rule", "outcome", "reason")
REVIEW_FIELDS = ("reviewer", *SCORES, "recommendation", "comment")
REVIEWS_SHOWN = 50


@admin.register(Application)
class ApplicationAdmin(ScaledAdmin):
    # Few columns: rendering 100 rows of 13 cells cost more than the queries (issue 13).
    list_display = [
        "title",
        "organisation",
        "call",
        "request",
        "status",
        "submitted_at",
        "review_count",
        "average_score",
    ]
    # A date filter instead of a date hierarchy: the hierarchy ran two aggregates per request.
    list_filter = ["call", "status", "organisation__kind", GpuModelListFilter, "submitted_at"]
    search_fields = [
        "title",
        "abstract",
        "organisation__name_en",
        "organisation__name_ko",
        "principal_investigator__email",
    ]
    ordering = ["-submitted_at"]
    list_select_related = ()  # joined for the page's rows only (ApplicationChangeList)
    # Eligibility and reviews are read-only sections (get_fieldsets), not inlines.
    actions = ["start_review"]
    change_form_template = "admin/portal/application/change_form.html"
    fieldsets = [
        (None, {"fields": ["status", "call", "organisation", "principal_investigator", "team_members"]}),
        (_("Project"), {"fields": ["title", "abstract", "field"]}),
        (
            _("Request"),
            {"fields": ["gpu_model", "gpu_count", "gpu_hours_shown", "starts_on", "ends_on", "remaining_budget"]},
        ),
        (_("Justification"), {"fields": ["justification", "software", "data_sensitivity", "attachment_link"]}),
        (_("Organisation history"), {"fields": ["organisation_history"]}),
        (_("Timeline"), {"fields": ["timeline", "submitted_at", "decided_at"]}),
    ]

    gpu_hours_shown = grouped_field(Application, "gpu_hours")

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return [*(f for fs in self.fieldsets for f in fs[1]["fields"]), "eligibility", "reviews"]

    def get_fieldsets(self, request: HttpRequest, obj=None) -> list:
        """The eligibility results to whoever may view them; the reviews as `_sees_reviews` says."""
        fieldsets = list(self.fieldsets)
        if obj is not None and request.user.has_perm("portal.view_eligibilityresult"):
            fieldsets.insert(3, (_("Eligibility (latest evaluation)"), {"fields": ["eligibility"]}))
        if obj is not None and request.user.has_perm("portal.view_review") and self._sees_reviews(request, obj):
            fieldsets.append((Review._meta.verbose_name_plural, {"fields": ["reviews"]}))
        return fieldsets

    @admin.display(description=_("Eligibility (latest evaluation)"))
    def eligibility(self, obj: Application) -> str:
        """The newest evaluation's row per rule."""
        from portal.eligibility import rule_label

        newer = EligibilityResult.objects.filter(application=obj, evaluation__gt=OuterRef("evaluation"))
        rows = EligibilityResult.objects.filter(application=obj).filter(~Exists(newer)).order_by("pk")
        headers = [_("rule"), EligibilityResult._meta.get_field("outcome").verbose_name, _("reason")]
        outcome = choice_display(EligibilityResult, "outcome")
        return readonly_table(headers, ((rule_label(r.rule), outcome(r.outcome), r.reviewer_reason) for r in rows))

    @admin.display(description=_("reviews"))
    def reviews(self, obj: Application) -> str:
        """The latest reviews, newest first, with their scores and comments."""
        rows = obj.reviews.select_related("reviewer").order_by("-pk")[:REVIEWS_SHOWN]
        headers = [Review._meta.get_field(f).verbose_name for f in REVIEW_FIELDS]
        recommendation = choice_display(Review, "recommendation")
        return readonly_table(
            headers,
            (
                (r.reviewer, *(getattr(r, f) for f in SCORES), recommendation(r.recommendation), r.comment or "–")
                for r in rows
            ),
        )

    def _sees_reviews(self, request: HttpRequest, obj: Application | None) -> bool:
        """Reviews stay independent: other reviewers' scores and comments are shown to those who
        decide, and to a reviewer only once their own review of this application is saved."""
        if request.user.has_perm("portal.decide_application"):
            return True
        return obj is not None and obj.reviews.filter(reviewer=request.user).exists()

    def get_list_display(self, request: HttpRequest) -> list[str]:
        shown = list(super().get_list_display(request))
        if not request.user.has_perm("portal.decide_application"):
            shown.remove("average_score")  # the average of other reviewers' scores
        return shown

    def get_changelist(self, request: HttpRequest, **kwargs) -> type[ChangeList]:
        return ApplicationChangeList

    def _sorted_by_reviews(self, request: HttpRequest) -> bool:
        """Whether the changelist is sorted by a review column (`?o=` holds column indexes,
        counted with the action checkbox)."""
        order = request.GET.get("o", "")
        if (
            not order
            or request.resolver_match is None
            or request.resolver_match.url_name != "portal_application_changelist"
        ):
            return False
        display = ["action_checkbox", *self.get_list_display(request)] if self.get_actions(request) else []
        display = display or list(self.get_list_display(request))
        indexes = [int(p.lstrip("-")) for p in order.split(".") if p.lstrip("-").isdigit()]
        return any(i < len(display) and display[i] in REVIEW_COLUMNS for i in indexes)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Application]:
        queryset = (
            Application.objects.reviewable_by(request.user)
            .exclude(status=Application.Status.DRAFT)
            .select_related("call", "organisation", "principal_investigator", "gpu_model")
        )
        if self._sorted_by_reviews(request):  # the slow path, only when asked for
            total = F("reviews__merit") + F("reviews__feasibility") + F("reviews__national_priority")
            queryset = queryset.annotate(
                _review_count=Count("reviews"), _average=Avg(total + F("reviews__resource_justification"))
            )
        return queryset

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description=_("kind"), ordering="organisation__kind")
    def organisation_kind(self, obj: Application) -> str:
        return obj.organisation.get_kind_display()

    @admin.display(description=_("GPUs requested"), ordering="gpu_hours")
    def request(self, obj: Application) -> str:
        if not obj.gpu_count:
            return "–"
        return f"{obj.gpu_count} × {obj.gpu_model_id} · {obj.gpu_hours or 0:,} h"

    @admin.display(description=_("reviews"), ordering="_review_count")
    def review_count(self, obj: Application) -> int:
        return obj._review_count

    @admin.display(description=_("average total score"), ordering="_average")
    def average_score(self, obj: Application) -> str:
        return f"{obj._average:.1f}" if obj._average is not None else "–"

    @admin.display(description=_("team"))
    def team_members(self, obj: Application) -> str:
        return ", ".join(u.email for u in obj.team.all()) or "–"

    @admin.display(description=_("remaining call budget (GPU-hours)"))
    def remaining_budget(self, obj: Application) -> str:
        remaining = svc.call_remaining_gpu_hours(obj.call)
        return ", ".join(f"{gpu_model_label(m)}: {h:,}" for m, h in remaining.items())

    @admin.display(description=_("past applications, grants and unpaid invoices"))
    def organisation_history(self, obj: Application) -> str:
        others = (
            Application.objects.filter(organisation=obj.organisation)
            .exclude(pk=obj.pk)
            .exclude(status=Application.Status.DRAFT)
            .select_related("call")
            .order_by("-submitted_at")[:20]
        )
        grants = organisation_usage(obj.organisation_id)
        unpaid = organisation_unpaid_invoices(obj.organisation_id)
        status, grant_status = choice_display(Application, "status"), choice_display(Grant, "status")
        parts = [
            format_html("<p><strong>{}</strong></p>", _("Applications")),
            format_rows(
                "<p>{} · {} · {}</p>",
                (
                    (timezone.localdate(a.submitted_at) if a.submitted_at else "–", a.title, status(a.status))
                    for a in others
                ),
            )
            or format_html("<p>{}</p>", _("None")),
            format_html("<p><strong>{}</strong></p>", _("Grants")),
            format_rows(
                "<p>{} × {} · {} – {} · {} · {}</p>",
                (
                    (
                        row["grant"].gpu_count,
                        row["grant"].get_gpu_model_display(),
                        row["grant"].starts_on,
                        row["grant"].ends_on,
                        grant_status(row["grant"].status),
                        _("used %(used)s of %(subsidy)s GPU-hours (%(percent)s%%), utilisation %(util)s, %(kwh)s kWh")
                        % {
                            "used": row["gpu_hours_used"],
                            "subsidy": row["gpu_hours_subsidy"],
                            "percent": row["percent_of_subsidy"],
                            "util": "–" if row["avg_utilization"] is None else f"{row['avg_utilization']}%",
                            "kwh": row["energy_kwh"],
                        },
                    )
                    for row in grants
                ),
            )
            or format_html("<p>{}</p>", _("None")),
            charts.awarded_vs_used(
                grants,
                chart_id="history-grants",
                title=_("Past grants: GPU-hours awarded and used"),
                desc=_("For each of the organisation's grants, the GPU-hours used against those awarded."),
            )
            if grants
            else "",
            format_html("<p><strong>{}</strong></p>", _("Unpaid invoices")),
            format_html("<p>{}</p>", len(unpaid) or _("None")),
        ]
        return format_html("{}" * len(parts), *parts)

    @admin.display(description=_("attachment (PDF)"))
    def attachment_link(self, obj: Application) -> str:
        """A link to the permission-checked download, never the storage path."""
        if not obj.attachment:
            return "–"
        url = reverse("admin:portal_application_attachment", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.attachment_name or _("Download the PDF"))

    @admin.display(description=_("timeline"))
    def timeline(self, obj: Application) -> str:
        rows = obj.events.select_related("actor")
        old_status, new_status = (
            choice_display(ApplicationEvent, "old_status"),
            choice_display(ApplicationEvent, "new_status"),
        )
        return format_rows(
            "<p>{} · {} → {} · {}<br>{}</p>",
            (
                (
                    local_time(e.created_at),
                    old_status(e.old_status) or "–",
                    new_status(e.new_status),
                    e.actor or "–",
                    e.reason,
                )
                for e in rows
            ),
        )

    @admin.action(description=_("Start the review of the selected applications"))
    def start_review(self, request: HttpRequest, queryset: QuerySet[Application]) -> None:
        if not request.user.has_perm("portal.decide_application") and not request.user.has_perm("portal.add_review"):
            raise PermissionDenied
        for application in queryset.filter(status=Application.Status.SUBMITTED):
            try:
                svc.application_start_review(application=application, actor=request.user)
            except PortalError as exc:
                self.message_user(request, f"{application}: {exc.message}", messages.ERROR)

    # -- review and decision pages ----------------------------------------------------------

    def get_urls(self):
        return [
            path("<int:pk>/review/", self.admin_site.admin_view(self.review_view), name="portal_application_review"),
            path("<int:pk>/decide/", self.admin_site.admin_view(self.decide_view), name="portal_application_decide"),
            path(
                "<int:pk>/attachment/",
                self.admin_site.admin_view(self.attachment_view),
                name="portal_application_attachment",
            ),
            path(
                "<int:pk>/start-review/",
                self.admin_site.admin_view(self.start_review_view),
                name="portal_application_start_review",
            ),
            *super().get_urls(),
        ]

    def _application(self, request: HttpRequest, pk: int) -> Application:
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def _page(self, request, application, form, title: str, *, with_reviews: bool = False) -> HttpResponse:
        """The review and decision pages show the whole application beside the form; the
        decision page also every review with its scores and their averages."""
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": application,
            "form": form,
            "title": title,
            "results": svc.latest_eligibility(application),
            "remaining": svc.call_remaining_gpu_hours(application.call),
            "team": self.team_members(application),
            "history": self.organisation_history(application),
            "attachment": self.attachment_link(application),
        }
        if with_reviews:
            reviews = application.reviews.select_related("reviewer").order_by("created_at")
            context["reviews"] = reviews
            context["averages"] = reviews.aggregate(*(Avg(f) for f in SCORES))
            context["averages"] = [context["averages"][f"{f}__avg"] for f in SCORES]
        return TemplateResponse(request, "admin/portal/application/action_form.html", context)

    def _refuse_in_this_state(self, request: HttpRequest, application: Application, allowed: set[str]):
        """Only the actions possible now are offered: no form that fails after it was filled."""
        if application.status in allowed:
            return None
        self.message_user(
            request,
            _("This application is “%(status)s”; that action is no longer possible.")
            % {"status": application.get_status_display()},
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:portal_application_change", args=[application.pk]))

    def start_review_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:portal_application_change", args=[pk]))
        if not (request.user.has_perm("portal.decide_application") or request.user.has_perm("portal.add_review")):
            raise PermissionDenied
        try:
            svc.application_start_review(application=self._application(request, pk), actor=request.user)
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:portal_application_change", args=[pk]))

    def attachment_view(self, request: HttpRequest, pk: int) -> FileResponse:
        """The applicant's PDF for reviewers and approvers: never for staff with a conflict of
        interest (the queryset hides the application, and the service rule is checked again),
        always as a download, never sniffed into HTML by the browser."""
        if not (request.user.has_perm("portal.add_review") or request.user.has_perm("portal.decide_application")):
            raise PermissionDenied
        application = self._application(request, pk)
        try:
            svc._require_no_conflict(application, request.user)  # the one conflict rule of the services
        except PortalError as exc:
            raise PermissionDenied(exc.message) from exc
        return attachment_response(application)

    def review_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("portal.add_review"):
            raise PermissionDenied
        application = self._application(request, pk)
        if refused := self._refuse_in_this_state(request, application, REVIEWABLE):
            return refused
        existing = Review.objects.filter(application=application, reviewer=request.user).first()
        form = ReviewForm(request.POST or None, instance=existing)
        if request.method == "POST" and form.is_valid():
            try:
                svc.review_save(application=application, reviewer=request.user, **form.cleaned_data)
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, _("Your review was saved."))
                return HttpResponseRedirect(reverse("admin:portal_application_change", args=[pk]))
        return self._page(request, application, form, _("Review"))

    def decide_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not request.user.has_perm("portal.decide_application"):
            raise PermissionDenied
        application = self._application(request, pk)
        if refused := self._refuse_in_this_state(request, application, REVIEWABLE):
            return refused
        initial = {
            "gpu_model": application.gpu_model_id,
            "gpu_count": application.gpu_count,
            "gpu_hours": application.gpu_hours,
            "starts_on": application.starts_on,
            "ends_on": application.ends_on,
        }
        form = DecisionForm(request.POST or None, initial=initial, call=application.call)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                if data["action"] == "approve":
                    svc.application_approve(
                        application=application,
                        actor=request.user,
                        gpu_model=data["gpu_model"],
                        gpu_count=data["gpu_count"],
                        gpu_hours=data["gpu_hours"],
                        starts_on=data["starts_on"],
                        ends_on=data["ends_on"],
                        override_reason=data["override_reason"],
                        reason=data["reason"],
                        confirm_outside_window=data["confirm_outside_window"],
                    )
                elif data["action"] == "return":
                    svc.application_return(application=application, actor=request.user, reason=data["reason"])
                else:
                    svc.application_reject(application=application, actor=request.user, reason=data["reason"])
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, _("The decision was recorded and the applicant informed."))
                return HttpResponseRedirect(reverse("admin:portal_application_change", args=[pk]))
        return self._page(request, application, form, _("Decision"), with_reviews=True)


@admin.register(Review)
class ReviewAdmin(ScaledAdmin):
    list_display = [
        "application",
        "reviewer",
        "merit",
        "feasibility",
        "national_priority",
        "resource_justification",
        "recommendation",
    ]
    list_filter = ["recommendation", "application__call"]
    list_select_related = ["application", "reviewer"]
    ordering = ["-pk"]
    readonly_fields = [f.name for f in Review._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Review]:
        return (
            super()
            .get_queryset(request)
            .filter(Exists(Application.objects.reviewable_by(request.user).filter(pk=OuterRef("application"))))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # reviews are written from the application's "Review" page
