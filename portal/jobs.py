"""Background jobs of the portal app. Each takes plain values and is safe to retry."""

from portal.mail import build_message


def send_email_job(payload: dict) -> int:
    return build_message(payload).send()
