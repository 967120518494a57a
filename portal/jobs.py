"""Background jobs of the portal app. Each takes plain values and is safe to retry."""

from portal.mail import mail_send, mailing_send, mailings_prune


def send_email_job(payload: dict) -> int:
    """A rendered e-mail; none to a deactivated account (portal.mail.mail_send)."""
    return mail_send(payload)


def mailing_send_job(mailing_id: int) -> str:
    """An e-mail whose recipients are decided now (portal.mail.mailing_send)."""
    return mailing_send(mailing_id=mailing_id)


def outbox_drain_job() -> int:
    """Send what the outbox still holds (jobs and e-mails written while Redis was down)."""
    from portal.outbox import outbox_drain

    return outbox_drain()


def mailings_prune_job() -> int:
    """E-mails to organisations done more than MAILING_RETENTION_DAYS ago (portal.mail.mailings_prune)."""
    return mailings_prune()


def outbox_prune_job() -> int:
    from portal.outbox import outbox_prune

    return outbox_prune()
