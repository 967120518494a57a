"""Without a Stripe key (a development install, `make run` as it comes), the payment buttons say
that payments are not configured here, at once, and nothing calls Stripe (which would answer
"did not answer in time" after its retries)."""

from __future__ import annotations

from datetime import date

import pytest

from billing import stripe_client
from billing.models import BillingAccount, HourPack
from billing.services.invoices import invoice_issue
from tests.billing.helpers import at, grant_for, rate_card, startup


@pytest.fixture
def no_stripe(settings, monkeypatch):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_API_BASE = ""

    def refuse(**_):
        raise AssertionError("Stripe was called without a key")

    monkeypatch.setattr(stripe_client, "_client", refuse)
    return settings


def test_without_a_stripe_key_saving_a_card_says_payments_are_not_configured(client, db, no_stripe):
    org, owner = startup()
    client.force_login(owner)
    response = client.post("/billing/card/", {"organisation": org.pk}, follow=True)
    assert response.status_code == 200
    assert "결제가 설정되어 있지 않습니다" in response.content.decode()  # Korean by default
    assert not BillingAccount.objects.filter(organisation=org).exists()


def test_without_a_stripe_key_paying_an_invoice_says_payments_are_not_configured(client, db, no_stripe):
    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    client.force_login(owner)
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/", follow=True)
    assert response.status_code == 200
    assert "결제가 설정되어 있지 않습니다" in response.content.decode()  # Korean by default


def test_without_a_stripe_key_buying_hours_keeps_the_form_and_says_so_in_korean(client, db, no_stripe):
    rate_card("startup", 3000, model="H100-80GB")
    org, owner = startup()
    client.force_login(owner)
    response = client.post(
        f"/billing/hour-packs/?organisation={org.pk}",
        {"gpu_model": "H100-80GB", "gpu_hours": "12"},
        HTTP_ACCEPT_LANGUAGE="ko",
    )
    page = response.content.decode()
    assert response.status_code == 503 and 'value="12"' in page
    assert "결제가 설정되어 있지 않습니다" in page
    assert not HourPack.objects.exists()
