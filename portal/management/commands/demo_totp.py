"""The current TOTP code of each demo staff user, for signing in to the admin during a demo
without an authenticator app. Refuses production, like seed_demo. Prints in the operator's
language (OperatorCommand)."""

from __future__ import annotations

import time

from allauth.mfa import app_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from allauth.mfa.utils import decrypt
from django.conf import settings
from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from portal.management.commands.seed_demo import USERS
from portal.management.operator import OperatorCommand


class Command(OperatorCommand):
    help = "Print the current TOTP code of every demo staff user (development only)."

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError(_("demo_totp never runs in production (PORTAL_ENV=production)."))
        now = time.time()
        counter = int(now) // app_settings.TOTP_PERIOD
        left = app_settings.TOTP_PERIOD - int(now) % app_settings.TOTP_PERIOD
        emails = [email for email, *_rest, is_staff, _su in USERS if is_staff]
        found = Authenticator.objects.filter(user__email__in=emails, type=Authenticator.Type.TOTP).select_related(
            "user"
        )
        for totp in sorted(found, key=lambda a: emails.index(a.user.email)):
            code = format_hotp_value(hotp_value(decrypt(totp.data["secret"]), counter))
            self.stdout.write(f"  {totp.user.email:<32} {code}")
        self.stdout.write(
            ngettext(
                "Valid for %(count)d more second; each code works once.",
                "Valid for %(count)d more seconds; each code works once.",
                left,
            )
            % {"count": left}
        )
