"""Background jobs of the portal app. Each takes plain values and is safe to retry."""

from portal.mail import build_message


def send_email_job(payload: dict) -> int:
    return build_message(payload).send()


def outbox_drain_job() -> int:
    """Send what the outbox still holds (jobs and e-mails written while Redis was down)."""
    from portal.outbox import outbox_drain

    return outbox_drain()


def outbox_prune_job() -> int:
    from portal.outbox import outbox_prune

    return outbox_prune()
