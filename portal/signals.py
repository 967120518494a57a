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
    """Activating TOTP means entering a valid code from it: this session passed the factor."""
    from allauth.account.internal.flows.login import record_authentication

    if request is not None and hasattr(request, "session"):
        record_authentication(request, user, "mfa", id=authenticator.pk, type=authenticator.type)
