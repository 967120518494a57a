"""The pages `make bench` measures, who asks for them, and signed-in sessions for them.

Every page is requested as the user the issue measured it with (the largest organisation's
owner for /applications/, a researcher with a few applications for the dashboard, the centre's
operator for the admin). Sessions are written straight into the session store, as a login would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db.models import Count

REFERENCE = "/bench/reference/"
SIGNED_IN_FLOOR = "/bench/signed-in/"
FLOOR_NAME = "signed-in floor: base layout, empty body"
SIGNED_IN_REFERENCE = "reference page, asked for with a session cookie"
MEMBERSHIPS = "/admin/portal/membership/?organisation__id__exact="
AUDIT_LOG = "/admin/portal/organisationauditlog/?organisation__id__exact="


@dataclass(frozen=True)
class Page:
    name: str
    path: str
    user_id: int | None  # None: anonymous
    staff: bool = False


def session_for(user, *, staff: bool = False) -> str:
    """A session key that is logged in as `user` (with the second factor for staff)."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from portal.middleware import SEEN_KEY, STARTED_KEY

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    if staff:
        from allauth.account.internal.flows.login import (
            _AUTHENTICATION_METHODS_USER_SESSION_KEY,
            AUTHENTICATION_METHODS_SESSION_KEY,
        )

        now = time.time()
        session[AUTHENTICATION_METHODS_SESSION_KEY] = [
            {"method": "password", "at": now},
            {"method": "mfa", "at": now, "type": "totp"},
        ]
        session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
        # Far in the future: the staff session is not written on every request of the run.
        session[STARTED_KEY] = session[SEEN_KEY] = now + 3600
    session.create()
    return session.session_key


def pages() -> list[Page]:
    """The measured pages, chosen from the generated data (see benchmarks/generate.py)."""
    from allocations.models import Grant
    from portal.models import Application, Membership, User

    admin = User.objects.get(email="bench-admin@centre.example.kr")
    largest = Membership.objects.values("organisation").annotate(n=Count("pk")).order_by("-n").first()["organisation"]
    owner = Membership.objects.filter(organisation=largest, role="owner").order_by("pk").first().user_id
    # A researcher with a few applications and a grant: what most dashboards look like.
    researcher = (
        Grant.objects.filter(status="active")
        .annotate(n=Count("application__principal_investigator__applications_led"))
        .filter(n__gte=2)
        .order_by("pk")
        .values_list("application__principal_investigator", flat=True)
        .first()
    )
    grant = Grant.objects.filter(status="active").annotate(n=Count("tasks")).order_by("-n", "pk").first()
    grant_pi = grant.application.principal_investigator_id
    application = Application.objects.filter(principal_investigator=researcher).order_by("pk").first()
    decided = Application.objects.filter(status="in_review").order_by("pk").first()
    return [
        Page("reference: one indexed 20-row query", REFERENCE, None),
        Page(FLOOR_NAME, SIGNED_IN_FLOOR, researcher),
        # The bare page asked for with a session: the session and the user read, no layout.
        Page(SIGNED_IN_REFERENCE, REFERENCE, researcher),
        Page("/dashboard/", "/dashboard/", researcher),
        Page("/applications/ (largest organisation's owner)", "/applications/", owner),
        Page("/applications/<id>/", f"/applications/{application.pk}/", researcher),
        Page("/calls/", "/calls/", None),
        Page("/grants/<id>/ (most tasks)", f"/grants/{grant.pk}/", grant_pi),
        Page("/organisations/ (largest organisation's owner)", "/organisations/", owner),
        Page("/organisations/<id>/ (largest organisation)", f"/organisations/{largest}/", owner),
        Page("/keys/", "/keys/", researcher),
        Page("/rates/", "/rates/", None),
        Page("/billing/invoices/ (largest organisation's owner)", "/billing/invoices/", owner),
        Page("/billing/hour-packs/ (largest organisation's owner)", "/billing/hour-packs/", owner),
        Page(
            "admin review queue",
            "/admin/portal/application/?status__in=submitted%2Cin_review",
            admin.pk,
            staff=True,
        ),
        Page("admin application list, unfiltered", "/admin/portal/application/", admin.pk, staff=True),
        Page("admin application change page", f"/admin/portal/application/{decided.pk}/change/", admin.pk, True),
        Page("admin decision page", f"/admin/portal/application/{decided.pk}/decide/", admin.pk, True),
        Page("admin grant list", "/admin/allocations/grant/", admin.pk, True),
        Page("admin grant change page", f"/admin/allocations/grant/{grant.pk}/change/", admin.pk, True),
        Page("admin node list", "/admin/allocations/node/", admin.pk, True),
        Page(
            "admin node change page",
            f"/admin/allocations/node/{grant.assignments.first().node_id}/change/",
            admin.pk,
            True,
        ),
        Page("admin provisioning tasks", "/admin/allocations/provisioningtask/", admin.pk, True),
        Page("admin invoices", "/admin/billing/invoice/", admin.pk, True),
        Page("admin usage hours", "/admin/allocations/usagehour/", admin.pk, True),
        Page("admin notices", "/admin/allocations/notice/", admin.pk, True),
        Page("admin organisation list", "/admin/portal/organisation/", admin.pk, True),
        Page("admin organisation change page", f"/admin/portal/organisation/{largest}/change/", admin.pk, True),
        # The lists the organisation's page links to for all its members and audit rows.
        Page("admin memberships of the largest organisation", f"{MEMBERSHIPS}{largest}", admin.pk, True),
        Page("admin audit log of the largest organisation", f"{AUDIT_LOG}{largest}", admin.pk, True),
        Page("admin user list", "/admin/portal/user/", admin.pk, True),
        Page("admin audit log", "/admin/portal/organisationauditlog/", admin.pk, True),
        Page("admin review list", "/admin/portal/review/", admin.pk, True),
        Page("admin outbox", "/admin/portal/outboxmessage/", admin.pk, True),
        Page("admin node accounts", "/admin/allocations/nodeaccount/", admin.pk, True),
        Page("admin Jupyter sessions", "/admin/allocations/jupytersession/", admin.pk, True),
        Page("admin node operations", "/admin/allocations/nodeoperation/", admin.pk, True),
        Page("admin SSH keys", "/admin/allocations/sshkey/", admin.pk, True),
        Page("admin e-mail domains", "/admin/portal/organisationdomain/", admin.pk, True),
        Page("admin invitations", "/admin/portal/invitation/", admin.pk, True),
        Page("admin calls", "/admin/portal/call/", admin.pk, True),
        Page("admin rates", "/admin/billing/rate/", admin.pk, True),
    ]


def pending_to(count: int) -> int:
    """Makes `count` applications await review (drafts submitted), for the 2,000-pending run.
    Returns how many were changed."""
    from django.db.models import Q
    from django.utils import timezone

    from portal.models import Application

    pending = Application.objects.filter(Q(status="submitted") | Q(status="in_review")).count()
    if pending >= count:
        return 0
    ids = list(
        Application.objects.filter(status="draft").order_by("pk").values_list("pk", flat=True)[: count - pending]
    )
    return Application.objects.filter(pk__in=ids).update(status="submitted", submitted_at=timezone.now())
