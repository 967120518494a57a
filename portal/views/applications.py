"""Applicants' pages: apply, save drafts, submit, follow the timeline, withdraw."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from portal.attachments import attachment_response
from portal.errors import PortalError
from portal.forms import ApplicationForm, PrincipalInvestigatorForm, ReasonForm
from portal.models import Application, Call
from portal.pagination import paginate
from portal.services import applications as svc
from portal.services import memberships


def get_application_for_user(user, pk: int, *, manage: bool = False) -> Application:
    """Team members, the principal investigator and the organisation's owners see an
    application; everyone else gets 404. With `manage`, team members get 403."""
    application = get_object_or_404(
        Application.objects.visible_to(user).select_related("call", "organisation", "principal_investigator"), pk=pk
    )
    if manage and not application.is_managed_by(user):
        raise PermissionDenied(_("Only the principal investigator or an owner of the organisation can do this."))
    return application


@login_required
def application_list(request: HttpRequest) -> HttpResponse:
    applications = Application.objects.visible_to(request.user).select_related("call", "organisation")
    page = paginate(request, applications)
    return render(request, "portal/application_list.html", {"applications": page.object_list, "page": page})


def _save_and_maybe_submit(request: HttpRequest, form: ApplicationForm, application: Application | None):
    """Save the draft; with the submit button, also submit. Returns (application, response)."""
    upload = form.cleaned_data.get("attachment")
    attachment = upload if hasattr(upload, "content_type") else None  # only a new upload replaces the file
    expected_version = form.cleaned_data.get("version") or 0
    if application is None and (token := form.cleaned_data.get("client_token")):
        # The form of the apply page posted again (Back, then submit): same application.
        application = svc.application_by_client_token(user=request.user, client_token=token)
        if application is not None and not application.is_editable:
            messages.info(request, _("This application was already submitted; nothing was sent again."))
            return redirect("portal:application_detail", pk=application.pk)
        # A draft made from this form is at version 1 until changed elsewhere (then: stale).
        expected_version = 1
    reposted = application is not None
    if application is None:
        application = svc.application_create_draft(
            call=form.call,
            organisation=form.cleaned_data["organisation"],
            user=request.user,
            data=form.draft_data(),
            team=list(form.cleaned_data.get("team") or []),
            attachment=attachment,
            client_token=form.cleaned_data.get("client_token"),
        )
    else:
        try:
            application = svc.application_update(
                application=application,
                user=request.user,
                data=form.draft_data(),
                team=list(form.cleaned_data.get("team") or []),
                attachment=attachment,
                expected_version=expected_version,
            )
        except PortalError as exc:
            if not (reposted and exc.code == "not_editable"):
                raise
            # The same form, posted twice at once: the other post submitted it meanwhile.
            messages.info(request, _("This application was already submitted; nothing was sent again."))
            return redirect("portal:application_detail", pk=application.pk)
    if "submit" not in request.POST:
        messages.success(request, _("The draft was saved."))
        return redirect("portal:application_detail", pk=application.pk)
    try:
        svc.application_submit(application=application, actor=request.user)
    except PortalError as exc:  # ApplicationIneligible too: its results are on the page
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The application was submitted. You will get an e-mail at every decision."))
    return redirect("portal:application_detail", pk=application.pk)


def _apply_token(request: HttpRequest, call: Call) -> tuple[Application | None, str]:
    """One form token per call and session, kept until the user asks for another application
    (`?new=1`): the page reached with Back carries the token of the application already made
    from it, so posting it again finds that application instead of making a second one."""
    key = f"apply_token_{call.pk}"
    token = request.session.get(key)
    if token and "new" not in request.GET:
        existing = svc.application_by_client_token(user=request.user, client_token=token)
        if existing is not None:
            return existing, token
        return None, token
    token = str(uuid.uuid4())
    request.session[key] = token
    return None, token


@login_required
@require_http_methods(["GET", "POST"])
def application_apply(request: HttpRequest, pk: int) -> HttpResponse:
    call = get_object_or_404(Call.objects.open(), pk=pk)
    form = ApplicationForm(request.POST or None, request.FILES or None, call=call, user=request.user)
    if not form.fields["organisation"].queryset.exists():
        messages.warning(request, _("Join or register your organisation before applying."))
        return redirect("portal:organisation_list")
    if request.method == "POST" and form.is_valid():
        try:
            return _save_and_maybe_submit(request, form, None)
        except PortalError as exc:
            form.add_error(None, exc.message)
    if request.method == "GET":
        existing, token = _apply_token(request, call)
        if existing is not None:
            messages.info(request, _("You already started an application to this call; here it is."))
            return redirect("portal:application_detail", pk=existing.pk)
        form.fields["client_token"].initial = token
    return render(request, "portal/application_form.html", {"form": form, "call": call}, status=200)


@login_required
@require_http_methods(["GET", "POST"])
def application_edit(request: HttpRequest, pk: int) -> HttpResponse:
    application = get_application_for_user(request.user, pk, manage=True)
    if not application.is_editable:
        messages.error(request, _("This application can no longer be edited."))
        return redirect("portal:application_detail", pk=application.pk)
    form = ApplicationForm(
        request.POST or None, request.FILES or None, instance=application, call=application.call, user=request.user
    )
    if request.method == "POST" and form.is_valid():
        try:
            return _save_and_maybe_submit(request, form, application)
        except PortalError as exc:
            form.add_error(None, exc.message)
    return render(
        request, "portal/application_form.html", {"form": form, "call": application.call, "application": application}
    )


@login_required
def application_detail(request: HttpRequest, pk: int) -> HttpResponse:
    application = get_application_for_user(request.user, pk)
    context = {
        "application": application,
        "results": svc.latest_eligibility(application),
        # The reasons speak to the principal investigator; anyone else reads them about them.
        "about_the_applicant": request.user.pk != application.principal_investigator_id,
        "events": application.events.select_related("actor"),
        "missing": svc.missing_for_submission(application) if application.is_editable else [],
        "withdraw_form": ReasonForm(),
        "team": application.team.all(),
        "grant": getattr(application, "grant", None),
        "can_manage": application.is_managed_by(request.user),
        "call_open": Call.objects.open().filter(pk=application.call_id).exists(),
        "pi_form": PrincipalInvestigatorForm(application=application)
        if application.organisation.memberships.filter(user=request.user, role="owner").exists()
        and application.status not in (Application.Status.REJECTED, Application.Status.WITHDRAWN)
        else None,
    }
    return render(request, "portal/application_detail.html", context)


@login_required
@require_POST
def application_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    application = get_application_for_user(request.user, pk, manage=True)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        svc.application_withdraw(application=application, actor=request.user, reason=reason)
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The application was withdrawn."))
    return redirect("portal:application_detail", pk=application.pk)


@login_required
def application_attachment(request: HttpRequest, pk: int) -> FileResponse:
    """Attachments are never public media: only those who may see the application get them."""
    return attachment_response(get_application_for_user(request.user, pk))


@login_required
@require_POST
def application_change_pi(request: HttpRequest, pk: int) -> HttpResponse:
    """An owner passes the principal investigator's role on (before the PI may leave)."""
    application = get_application_for_user(request.user, pk)
    form = PrincipalInvestigatorForm(request.POST, application=application)
    if not form.is_valid():
        messages.error(request, _("Choose a member of the organisation."))
        return redirect("portal:application_detail", pk=application.pk)
    try:
        memberships.application_change_pi(
            application=application, new_pi=form.cleaned_data["principal_investigator"], actor=request.user
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("The principal investigator was changed."))
    return redirect("portal:application_detail", pk=application.pk)
