"""Runs localstripe on a loopback port for the tests (its CLI binds every interface), with its
state in memory only: its store pickles to a fixed /tmp path otherwise.

localstripe accepts any amount; Stripe refuses a PaymentIntent below its minimum charge (USD 0.50
or the equivalent) or above eight digits with an InvalidRequestError whose code is
`amount_too_small` / `amount_too_large`. The emulator is taught the same for KRW, so the tests
see Stripe's real refusal."""

import sys

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError

resources.Store.dump_to_disk = lambda self: None
resources.Store.try_load_from_disk = lambda self: None

# What this emulated Stripe enforces for KRW (the portal's own STRIPE_MIN_CHARGE_KRW is higher).
STRIPE_MIN_KRW = 700
STRIPE_MAX_KRW = 99_999_999

_create = resources.PaymentIntent._api_create.__func__


def _create_with_limits(cls, **data):
    if str(data.get("currency", "")).lower() == "krw":
        amount = int(data.get("amount", 0))
        if amount < STRIPE_MIN_KRW:
            raise UserError(
                400,
                f"Amount must convert to at least 50 cents. ₩{amount} converts to less than $0.50 USD.",
                {"code": "amount_too_small", "param": "amount"},
            )
        if amount > STRIPE_MAX_KRW:
            raise UserError(
                400,
                "Amount must be no more than ₩99,999,999",
                {"code": "amount_too_large", "param": "amount"},
            )
    return _create(cls, **data)


resources.PaymentIntent._api_create = classmethod(_create_with_limits)

if __name__ == "__main__":
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
