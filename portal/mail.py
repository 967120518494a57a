"""E-mail leaves through a background job: a slow or failing mail server never slows or breaks
a request, and a failed send stays in RQ's failed registry with its error for a retry. The job
is written to the outbox in the caller's transaction, so a Redis outage delays mail, never loses it."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.template.loader import render_to_string
from django.utils import translation

from portal.outbox import outbox_enqueue

# Enqueued by dotted path: portal.jobs imports this module, never the reverse.
SEND_EMAIL_JOB = "portal.jobs.send_email_job"


def mail_enqueue(message: EmailMessage) -> None:
    """Queue an already rendered message through the outbox: sent after commit, so a rolled-back
    transaction sends nothing, and kept until Redis takes it."""
    payload = {
        "subject": str(message.subject),
        "body": message.body,
        "from_email": message.from_email,
        "to": list(message.to),
        "cc": list(message.cc),
        "bcc": list(message.bcc),
        "reply_to": list(message.reply_to),
        "alternatives": [(str(c), m) for c, m in getattr(message, "alternatives", [])],
    }
    outbox_enqueue(SEND_EMAIL_JOB, payload)


def mail_render_and_enqueue(*, template: str, to: str, context: dict, language: str | None = None) -> None:
    """Render `emails/<template>_subject.txt` and `_body.txt` in the recipient's language."""
    context = {"site_url": settings.SITE_URL, **context}
    with translation.override(language or translation.get_language()):
        subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
        body = render_to_string(f"emails/{template}_body.txt", context)
    mail_enqueue(EmailMultiAlternatives(subject=subject, body=body, to=[to]))


def build_message(payload: dict) -> EmailMultiAlternatives:
    msg = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["body"],
        from_email=payload["from_email"],
        to=payload["to"],
        cc=payload["cc"],
        bcc=payload["bcc"],
        reply_to=payload["reply_to"],
    )
    for content, mimetype in payload["alternatives"]:
        msg.attach_alternative(content, mimetype)
    return msg
