from __future__ import annotations

import django_rq
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing.services.estimates import grants_month
from portal import services
from portal.dashboard import dashboard_read
from portal.forms import BusinessRegistrationDocumentForm, InvitationForm, MembershipRoleForm, OrganisationForm
from portal.models import Call, Membership, Organisation
from portal.pagination import paginate
from portal.services.dashboard import dashboard_overview


def get_organisation_for_user(user, pk: int) -> Organisation:
    """Another organisation's object is a 404, never a 403: its existence is not disclosed."""
    return get_object_or_404(Organisation.objects.visible_to(user), pk=pk)


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html")


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    # Who the user is now (memberships), then only what those memberships show: portal/dashboard.py.
    data = dashboard_read(request.user)
    grants = data.grants
    months = grants_month([row["grant"] for row in grants])
    for row in grants:
        row["month"] = months[row["grant"].pk]
    context = {"memberships": data.memberships, "applications": data.applications, "grants": grants}
    context["overview"] = dashboard_overview(user=request.user, grant_rows=grants, memberships=data.memberships)
    return render(request, "portal/dashboard.html", context)


@login_required
def organisation_list(request: HttpRequest) -> HttpResponse:
    memberships = Membership.objects.filter(user=request.user).select_related("organisation")
    return render(request, "portal/organisation_list.html", {"memberships": memberships})


@login_required
@require_http_methods(["GET", "POST"])
def organisation_create(request: HttpRequest) -> HttpResponse:
    form = OrganisationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.organisation_create(user=request.user, **form.cleaned_data)
        except services.PortalError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("The organisation was created. You are its owner."))
            return redirect("portal:organisation_detail", pk=org.pk)
    return render(request, "portal/organisation_form.html", {"form": form})


def _render_organisation(
    request: HttpRequest, org: Organisation, invitation_form: InvitationForm | None = None, status: int = 200
) -> HttpResponse:
    my_membership = org.memberships.get(user=request.user)
    is_owner = my_membership.role == Membership.Role.OWNER
    page = paginate(request, org.memberships.select_related("user"))
    context = {
        "organisation": org,
        "membership": my_membership,
        "is_owner": is_owner,
        "members": page.object_list,
        "page": page,
        "domains": org.domains.all(),
        "invitations": org.invitations.filter(accepted_at__isnull=True) if is_owner else [],
        "invitation_form": (invitation_form or InvitationForm()) if is_owner else None,
        "roles": Membership.Role.choices,
        "brn_form": BusinessRegistrationDocumentForm()
        if is_owner and org.business_registration_number and not org.brn_verified
        else None,
    }
    return render(request, "portal/organisation_detail.html", context, status=status)


@login_required
def organisation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_organisation(request, get_organisation_for_user(request.user, pk))


@login_required
@require_POST
def invitation_create(request: HttpRequest, pk: int) -> HttpResponse:
    org = get_organisation_for_user(request.user, pk)
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            services.invitation_create(
                organisation=org,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
            )
        except services.PortalError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request, _("The invitation was sent to %(email)s.") % {"email": form.cleaned_data["email"]}
            )
            return redirect("portal:organisation_detail", pk=org.pk)
    return _render_organisation(request, org, invitation_form=form, status=400)


@login_required
@require_POST
def membership_update(request: HttpRequest, pk: int, membership_pk: int) -> HttpResponse:
    """Change a member's role, or remove them (`remove` in the form); owners only, except that
    anyone may leave."""
    org = get_organisation_for_user(request.user, pk)
    membership = get_object_or_404(org.memberships, pk=membership_pk)
    form = MembershipRoleForm(request.POST)
    try:
        if "remove" in request.POST:
            services.membership_remove(membership=membership, actor=request.user)
            messages.success(request, _("%(email)s was removed.") % {"email": membership.user.email})
            if membership.user_id == request.user.pk:
                return redirect("portal:organisation_list")
        elif form.is_valid():
            services.membership_set_role(membership=membership, role=form.cleaned_data["role"], actor=request.user)
            messages.success(request, _("The role of %(email)s was changed.") % {"email": membership.user.email})
        else:
            messages.error(request, _("Choose a valid role."))
    except services.PortalError as exc:
        messages.error(request, exc.message)
    return redirect("portal:organisation_detail", pk=org.pk)


@login_required
@require_POST
def organisation_brn_document(request: HttpRequest, pk: int) -> HttpResponse:
    """An owner uploads the business registration certificate for the centre to confirm."""
    org = get_organisation_for_user(request.user, pk)
    form = BusinessRegistrationDocumentForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.organisation_brn_upload_document(
                organisation=org, document=form.cleaned_data["document"], actor=request.user
            )
        except services.PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("The certificate was uploaded. The centre will confirm your number."))
    else:
        messages.error(request, " ".join(form.errors.get("document", [])))
    return redirect("portal:organisation_detail", pk=org.pk)


@login_required
@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_from_token(token)
    except services.PortalError as exc:
        return render(request, "portal/invitation_invalid.html", {"error": exc.message}, status=400)
    if request.method == "POST":
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except services.PortalError as exc:
            return render(request, "portal/invitation_invalid.html", {"error": exc.message}, status=400)
        messages.success(request, _("You joined %(organisation)s.") % {"organisation": membership.organisation.name})
        return redirect("portal:organisation_detail", pk=membership.organisation_id)
    return render(request, "portal/invitation_accept.html", {"invitation": invitation})


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for before reading <link rel=icon>: the static icon."""
    return redirect(static("favicon.svg"))


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Database and Redis status for load balancers and monitoring; 503 when either is down."""
    status = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        status["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        status["database"] = f"error: {type(exc).__name__}"
    try:
        django_rq.get_connection("default").ping()
        status["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        status["redis"] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in status.values())
    return JsonResponse({"status": "ok" if healthy else "error", **status}, status=200 if healthy else 503)


def call_list(request: HttpRequest) -> HttpResponse:
    """Open and upcoming calls with their rules; public, so anyone can see what they may apply to."""
    from portal.services.applications import calls_remaining_gpu_hours

    calls = Call.objects.prefetch_related("budgets")
    open_calls, upcoming = list(calls.open()), list(calls.upcoming())
    remaining = calls_remaining_gpu_hours(open_calls + upcoming)  # one query for all calls
    for call in open_calls + upcoming:
        call.budget_rows = [(b, remaining[call.pk][b.gpu_model_id]) for b in call.budgets.all()]
    return render(request, "portal/call_list.html", {"open_calls": open_calls, "upcoming_calls": upcoming})
