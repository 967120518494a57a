"""Signal receivers, connected in PortalConfig.ready()."""

from __future__ import annotations

from allauth.mfa import signals as mfa_signals
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver


@receiver(user_logged_in)
def _staff_session_starts(sender, request, user, **kwargs) -> None:
    """The absolute limit of a staff session counts from login."""
    from portal.middleware import staff_session_mark_login

    if request is not None and hasattr(request, "session") and user.is_staff:
        staff_session_mark_login(request)


@receiver(mfa_signals.authenticator_added)
def _adding_an_app_passes_mfa(sender, request, user, authenticator, **kwargs) -> None:
    """Activating TOTP means entering a valid code from it: this session passed the factor, but
    only as the account's first factor. Had the account another authenticator already, a session
    that never passed it does not earn "mfa" by adding its own (StaffMfaRequiredMiddleware keeps
    such a session off the pages that add or remove one; this is the second lock)."""
    from allauth.account.internal.flows.login import record_authentication
    from allauth.mfa.models import Authenticator

    from portal.middleware import session_passed_mfa

    if request is None or not hasattr(request, "session"):
        return
    earlier = Authenticator.objects.filter(user=user, created_at__lt=authenticator.created_at)
    if earlier.exclude(pk=authenticator.pk).exists() and not session_passed_mfa(request):
        return
    record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type)
