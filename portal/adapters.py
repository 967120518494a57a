"""django-allauth adapter: e-mail goes out through the background job, and confirming an
address on an organisation's verified domain joins that organisation."""

from __future__ import annotations

from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core import context
from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import lazy
from django.utils.translation import gettext, ngettext

from portal.mail import mail_enqueue
from portal.validators import email_domain


def _lockout_message() -> str:
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    return ngettext(
        "Too many failed sign-in attempts: signing in with this address is locked for %(minutes)d minute. "
        "If you forgot your password, reset it.",
        "Too many failed sign-in attempts: signing in with this address is locked for %(minutes)d minutes. "
        "If you forgot your password, reset it.",
        minutes,
    ) % {"minutes": minutes}


class PortalSite:
    """What allauth's mail templates call the site: the portal's name in the active language
    and its public address (SITE_URL)."""

    @property
    def name(self) -> str:
        return gettext("GPU Portal")

    @property
    def domain(self) -> str:
        return urlsplit(settings.SITE_URL).netloc

    def __str__(self) -> str:
        return self.name


class AccountAdapter(DefaultAccountAdapter):
    # The lockout says how long it lasts; templates/account/login.html adds the reset link.
    error_messages = {**DefaultAccountAdapter.error_messages, "too_many_login_attempts": lazy(_lockout_message, str)()}

    def send_mail(self, template_prefix: str, email: str, context_: dict) -> None:
        """Rendered in the request's language (the recipient's, who is making the request)
        with the portal's name and address, never the host name the request came in on."""
        request = context.request
        ctx = {"request": request, "email": email, "current_site": PortalSite()}
        ctx.update(context_)
        mail_enqueue(self.render_mail(template_prefix, email, ctx))

    def format_email_subject(self, subject: str) -> str:
        return f"[{gettext('GPU Portal')}] {subject}"

    def confirm_email(self, request: HttpRequest, email_address: EmailAddress) -> bool:
        from portal.services import membership_join_by_email_domain

        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            membership_join_by_email_domain(user=email_address.user, domain=email_domain(email_address.email))
        return confirmed
