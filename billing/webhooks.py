"""Stripe's webhook: verify the signature (and its timestamp), store the event id once, hand the
work to a job through the outbox, answer 200. A forged or stale request, or a live event sent to a
test-mode portal (or the reverse), gets 400 and changes nothing; a replay gets 200 and changes
nothing."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.services.payments import stripe_event_receive
from billing.stripe_client import PaymentError

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if len(request.body) > MAX_BODY:
        return HttpResponseBadRequest("too large")
    try:
        stripe_event_receive(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    except PaymentError as exc:
        log.warning("stripe webhook refused: %s", exc)
        if exc.code == "livemode":
            return HttpResponseBadRequest("livemode does not match the configured key")
        return HttpResponseBadRequest("invalid signature")
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("stripe webhook malformed: %s", exc)
        return HttpResponseBadRequest("malformed event")
    return HttpResponse("ok")
