"""Authenticator codes as a person types them in tests: the code of the current 30-second step,
never one in the last second of its step (it could reach the server after the step changed,
and allauth accepts only the current step's code)."""

from __future__ import annotations

import time

from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value


def wait_out_a_closing_step() -> int:
    """The current step, after waiting out its last second if it is in it."""
    while 30 - time.time() % 30 < 1:
        time.sleep(0.1)
    return int(time.time()) // 30


def current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, wait_out_a_closing_step()))
