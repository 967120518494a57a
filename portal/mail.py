"""E-mail leaves through a background job: a slow or failing mail server never slows or breaks
a request, and a failed send stays in RQ's failed registry with its error for a retry. The job
is written to the outbox in the caller's transaction, so a Redis outage delays mail, never loses it."""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Iterable
from datetime import timedelta
from email.utils import parseaddr

from allauth.account.models import EmailAddress
from django.apps import apps
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import models, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone, translation
from django.utils.module_loading import import_string

from portal.models import Mailing, User
from portal.outbox import outbox_enqueue

log = logging.getLogger(__name__)
# Enqueued by dotted path: portal.jobs imports this module, never the reverse.
SEND_EMAIL_JOB = "portal.jobs.send_email_job"
MAILING_JOB = "portal.jobs.mailing_send_job"


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


def mail_render(*, template: str, to: str, context: dict, language: str | None = None) -> EmailMultiAlternatives:
    """Render `emails/<template>_subject.txt` and `_body.txt` in the recipient's language."""
    context = {"site_url": settings.SITE_URL, **context}
    with translation.override(language or translation.get_language()):
        subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
        body = render_to_string(f"emails/{template}_body.txt", context)
    return EmailMultiAlternatives(subject=subject, body=body, to=[to])


def mail_render_and_enqueue(*, template: str, to: str, context: dict, language: str | None = None) -> None:
    """A rendered message to one fixed address (an applicant, an invitee, the operators)."""
    mail_enqueue(mail_render(template=template, to=to, context=context, language=language))


# -- e-mails whose recipients are decided when they are sent -----------------------------------


def _audience(path: str) -> Callable[..., Iterable]:
    return import_string(path)


def _who_is_looked_for(path: str) -> str:
    """The audience's docstring, first line: what the skip reason tells staff was looked for."""
    doc = (_audience(path).__doc__ or path).strip().splitlines()[0]
    return doc.rstrip(".")


def _people(path: str, objects: dict) -> list:
    """The audience now, without deactivated accounts or addresses, each person once."""
    seen, people = set(), []
    for user in _audience(path)(**objects):
        if user.is_active and user.email and user.pk not in seen:
            seen.add(user.pk)
            people.append(user)
    return people


def mailing_enqueue(
    *,
    template: str,
    audience: str,
    objects: dict[str, models.Model],
    organisation_id: int | None = None,
    context: dict | None = None,
    condition: str = "",
) -> Mailing:
    """Queue an e-mail to whoever `audience` (dotted path of `f(**objects) -> users`) names when
    it is SENT, in the caller's transaction. `objects` are reloaded then; `context` holds plain
    values. When nobody qualifies even now the mailing is recorded as skipped, without a job.
    `condition` (dotted path of `f(**objects) -> str`) is asked again when it is sent: a reason
    it returns (the e-mail no longer applies) skips it with that reason."""
    mailing = Mailing.objects.create(
        template=template,
        audience=audience,
        organisation_id=organisation_id,
        refs={name: [obj._meta.label_lower, obj.pk] for name, obj in objects.items()},
        context=context or {},
        condition=condition,
    )
    if not _people(audience, objects):
        _finish(mailing, Mailing.Status.SKIPPED, reason=f"nobody to tell when queued: {_who_is_looked_for(audience)}")
        return mailing
    outbox_enqueue(MAILING_JOB, mailing.pk)
    return mailing


def _finish(mailing: Mailing, new: str, *, reason: str = "") -> None:
    if not mailing.can_transition(new):
        raise ValueError(f"mailing {mailing.pk} is {mailing.status}, not queued")
    mailing.status = new
    mailing.reason = reason
    mailing.done_at = timezone.now()
    mailing.save(update_fields=["status", "reason", "done_at"])
    if new == Mailing.Status.SKIPPED:
        log.warning("mailing %s (%s) skipped: %s", mailing.pk, mailing.template, reason)


def _load(refs: dict) -> tuple[dict, str]:
    """The mailing's objects as they are now; the name of one that no longer exists, if any."""
    objects = {}
    for name, (label, pk) in refs.items():
        obj = apps.get_model(label)._default_manager.filter(pk=pk).first()
        if obj is None:
            return {}, f"{label} {pk}"
        objects[name] = obj
    return objects, ""


def mailing_send(*, mailing_id: int) -> str:
    """Send each person the audience names their copy, in their language, one copy per
    transaction: under the mailing's row lock the condition and the audience are read again
    (current memberships, roles, active accounts), the first person still owed a copy is sent
    it and recorded (`recipients`, `recipient_ids`), and the lock is released. So a member removed
    or deactivated while earlier copies went out gets none, two runs at once never send one
    person two copies, and a run that failed (a mail server error: the job stays in RQ's failed
    registry with its error) sends on retry only the copies still owed, never a second one to a
    person already told, even at a changed address. Nobody to tell at all → skipped with the
    reason; told some, then the rest no longer qualify or the e-mail no longer applies → sent,
    with the reason the others were not. Outside any transaction, as the job runs it: inside one,
    a failure would roll back the record of copies already delivered."""
    while True:
        with transaction.atomic():
            mailing = Mailing.objects.select_for_update().filter(pk=mailing_id).first()
            if mailing is None:
                return "gone"  # its organisation was deleted
            if mailing.status != Mailing.Status.QUEUED:
                return mailing.status
            objects, missing = _load(mailing.refs)
            if missing:
                return _stop(mailing, f"{missing} no longer exists")
            stale = import_string(mailing.condition)(**objects) if mailing.condition else ""
            if stale:
                return _stop(mailing, f"no longer applies: {stale}")
            owed = [user for user in _people(mailing.audience, objects) if not _told(mailing, user)]
            if not owed:
                return _stop(mailing, f"nobody left to tell: {_who_is_looked_for(mailing.audience)}")
            user = owed[0]
            context = {**objects, **mailing.context}
            message = mail_render(template=mailing.template, to=user.email, context=context, language=user.language)
            if _delivered(message):
                mailing.recipients = [*mailing.recipients, user.email]
            mailing.recipient_ids = [*mailing.recipient_ids, user.pk]
            mailing.save(update_fields=["recipients", "recipient_ids"])


def _delivered(message: EmailMessage) -> bool:
    """Send one copy. An address the mail server refuses for good (5xx: no such mailbox) is not
    delivered, logged, and not tried again, so it never holds back the copies after it; any
    other failure (a temporary refusal, the server away) fails the job for a retry."""
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _text in exc.recipients.values()]
        if not codes or min(codes) < 500:
            raise
        log.warning("e-mail %r refused for good for %s: %s", message.subject, ", ".join(exc.recipients), codes)
        return False
    return True


def _told(mailing: Mailing, user: User) -> bool:
    """This person already has their copy (by account, or by address for rows sent before
    accounts were recorded)."""
    return user.pk in mailing.recipient_ids or user.email.lower() in {a.lower() for a in mailing.recipients}


def _stop(mailing: Mailing, reason: str) -> str:
    """No copy is owed any more: sent if anyone was told, with what kept the others from it
    (addresses the mail server refused for good, or the reason given), skipped if nobody was."""
    notes = []
    refused = len(mailing.recipient_ids) - len(mailing.recipients)
    if refused:
        notes.append(f"the mail server refused {refused} address(es) for good")
    if not reason.startswith("nobody left to tell"):  # else every person still qualifying was served
        notes.append(f"the others not told: {reason}")
    if mailing.recipients:
        _finish(mailing, Mailing.Status.SENT, reason="; ".join(notes))
    else:
        _finish(mailing, Mailing.Status.SKIPPED, reason="; ".join(notes) or reason)
    return mailing.status


def mailings_prune(*, now=None) -> int:
    """Delete e-mails to organisations sent or skipped more than MAILING_RETENTION_DAYS ago
    (the admin's record of who was told); queued ones stay until they are sent."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MAILING_RETENTION_DAYS)
    deleted, _ = Mailing.objects.filter(done_at__lt=cutoff).delete()  # queued ones have no done_at
    return deleted


ADDRESS_FIELDS = ("to", "cc", "bcc")


def _address(value: str) -> str:
    return parseaddr(value)[1].lower()


def mail_send(payload: dict) -> int:
    """Send a rendered message now, leaving out the addresses of deactivated accounts as they are
    at this moment: a deactivated user receives nothing at all, whoever queued the e-mail and
    when. Addresses of no account (the operators', an invitee's) are sent to as they are."""
    addresses = {_address(a) for field in ADDRESS_FIELDS for a in payload[field]} - {""}
    match = Q()
    for address in addresses:
        match |= Q(email__iexact=address)
    inactive = set()
    if addresses:
        # The account's own address and any other address it added (allauth's EmailAddress).
        own = User.objects.filter(match, is_active=False).values_list("email", flat=True)
        added = EmailAddress.objects.filter(match, user__is_active=False).values_list("email", flat=True)
        inactive = {e.lower() for e in own.union(added)}
    if inactive:
        payload = {**payload, **{f: [a for a in payload[f] if _address(a) not in inactive] for f in ADDRESS_FIELDS}}
        log.warning("e-mail %r not sent to %s: deactivated", payload["subject"], ", ".join(sorted(inactive)))
        if not any(payload[f] for f in ADDRESS_FIELDS):
            return 0
    return build_message(payload).send()


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
