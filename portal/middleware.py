"""Staff must use MFA, in this session: a staff user without an authenticator app is sent to
set one up, and a session that has not passed the second factor (a login that skipped it, a
session begun before the app was added) is asked for a code before any admin page is served.
Staff sessions also end after STAFF_SESSION_IDLE_MINUTES without a request and at most
STAFF_SESSION_MAX_HOURS after login."""

from __future__ import annotations

import time
from collections.abc import Callable

from allauth.account.authentication import get_authentication_records
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

ADMIN_PREFIX = "/admin/"
# Pages that change how this account authenticates (add/remove an app, recovery codes, the
# password re-authentication that unlocks them): a staff session that has not passed the second
# factor must not reach them, or the password alone replaces the owner's authenticator app.
FACTOR_PREFIXES = ("/accounts/2fa/", "/accounts/reauthenticate/")
FACTOR_ALLOWED = ("mfa_reauthenticate", "account_logout")
STARTED_KEY = "staff_session_started"
SEEN_KEY = "staff_session_seen"


def session_passed_mfa(request: HttpRequest) -> bool:
    """allauth records every authentication step of this session (for this user); "mfa" is a
    TOTP or recovery code entered here, at login, reauthentication or when the app was added."""
    return any(r.get("method") == "mfa" for r in get_authentication_records(request, request.user))


def _has_totp(user) -> bool:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def staff_session_mark_login(request: HttpRequest) -> None:
    now = time.time()
    request.session[STARTED_KEY] = now
    request.session[SEEN_KEY] = now
    request.session.set_expiry(settings.STAFF_SESSION_IDLE_MINUTES * 60)


def _staff_session_expired(request: HttpRequest) -> bool:
    """True when the idle or the absolute limit has passed; otherwise notes this request."""
    now = time.time()
    started = request.session.get(STARTED_KEY)
    seen = request.session.get(SEEN_KEY)
    if started is None or seen is None:  # a session older than these limits: they start now
        staff_session_mark_login(request)
        return False
    idle = settings.STAFF_SESSION_IDLE_MINUTES * 60
    if now - seen > idle or now - started > settings.STAFF_SESSION_MAX_HOURS * 3600:
        return True
    if now - seen > 30:  # write the session (and renew its cookie) at most twice a minute
        request.session[SEEN_KEY] = now
        request.session.set_expiry(idle)
    return False


class StaffMfaRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.is_staff:
            return self.get_response(request)
        if _staff_session_expired(request):
            logout(request)
            messages.info(request, _("Your staff session has expired. Sign in again."))
            return HttpResponseRedirect(reverse("account_login") + "?" + urlencode({"next": request.get_full_path()}))
        # path_info, not path: behind a path prefix (SCRIPT_NAME) `path` starts with the prefix.
        path = request.path_info
        if path.startswith(FACTOR_PREFIXES) and request.path not in {reverse(name) for name in FACTOR_ALLOWED}:
            if _has_totp(user) and not session_passed_mfa(request):
                return HttpResponseRedirect(
                    reverse("mfa_reauthenticate") + "?" + urlencode({"next": request.get_full_path()})
                )
            return self.get_response(request)
        if not path.startswith(ADMIN_PREFIX):
            return self.get_response(request)
        if not _has_totp(user):
            messages.warning(request, _("Staff accounts must use two-factor authentication. Set it up to continue."))
            return HttpResponseRedirect(
                reverse("mfa_activate_totp") + "?" + urlencode({"next": request.get_full_path()})
            )
        if not session_passed_mfa(request):
            messages.warning(request, _("Enter the code from your authenticator app to open the admin."))
            return HttpResponseRedirect(
                reverse("mfa_reauthenticate") + "?" + urlencode({"next": request.get_full_path()})
            )
        return self.get_response(request)


class RememberLanguageMiddleware:
    """Keep User.language in step with the language the user reads, so that background e-mails
    (decisions, invitations) reach them in it. Writes only when it changes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Before the view: a mail rendered during this request is already in this language.
        user = getattr(request, "user", None)
        language = (getattr(request, "LANGUAGE_CODE", "") or "")[:2]
        if user is not None and user.is_authenticated and language in {"ko", "en"} and user.language != language:
            get_user_model().objects.filter(pk=user.pk).update(language=language)
            user.language = language
        return self.get_response(request)
