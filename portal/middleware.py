"""Staff must use MFA: a staff user without an authenticator app is sent to set one up before
any /admin/ page is served."""

from __future__ import annotations

from collections.abc import Callable

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _


class StaffMfaRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            request.path.startswith("/admin/")
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
        ):
            messages.warning(request, _("Staff accounts must use two-factor authentication. Set it up to continue."))
            return HttpResponseRedirect(
                reverse("mfa_activate_totp") + "?" + urlencode({"next": request.get_full_path()})
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
