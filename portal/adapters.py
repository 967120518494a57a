"""django-allauth adapter: e-mail goes out through the background job, and confirming an
address on an organisation's verified domain joins that organisation."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.models import EmailAddress
from allauth.core import context
from django.contrib.sites.shortcuts import get_current_site
from django.http import HttpRequest

from portal.mail import mail_enqueue


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context_: dict) -> None:
        request = context.request
        ctx = {"request": request, "email": email, "current_site": get_current_site(request)}
        ctx.update(context_)
        mail_enqueue(self.render_mail(template_prefix, email, ctx))

    def confirm_email(self, request: HttpRequest, email_address: EmailAddress) -> bool:
        from portal.services import membership_join_by_email_domain

        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            membership_join_by_email_domain(user=email_address.user)
        return confirmed
