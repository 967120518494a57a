"""Checkout, which localstripe lacks: the exact request the stripe SDK sends, recorded on a local
HTTP server."""

from __future__ import annotations

import pytest

from billing.models import HourPack
from billing.services import payments
from portal.errors import PortalError
from tests.billing.helpers import rate_card, startup
from tests.factories import MembershipFactory

BACK = "http://testserver/billing/hour-packs/"


def test_buying_an_hour_pack_sends_a_krw_payment_checkout_with_korean_methods(db, recorder):
    rate_card("startup", 3000)
    org, owner = startup()
    pack, url = payments.hour_pack_checkout_start(
        organisation=org, user=owner, gpu_model="H100-80GB", gpu_hours=100, success_url=BACK, cancel_url=BACK
    )
    # 100 h x 3,000 = 300,000 + VAT 30,000: under 2,000,000, so PAYCO and Samsung Pay are offered.
    assert (pack.total_krw, pack.status, url) == (330000, HourPack.Status.PENDING, pack_url(recorder))
    sent = recorder.find("/v1/checkout/sessions")[0]
    assert sent["headers"]["Idempotency-Key"] == f"hour-pack-{pack.pk}"
    assert sent["headers"]["Authorization"] == "Bearer sk_test_portal"
    assert sent["form"] == {
        "mode": "payment",
        "customer": "cus_recorded",
        "payment_method_types[0]": "card",
        "payment_method_types[1]": "kr_card",
        "payment_method_types[2]": "kakao_pay",
        "payment_method_types[3]": "naver_pay",
        "payment_method_types[4]": "payco",
        "payment_method_types[5]": "samsung_pay",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "krw",
        "line_items[0][price_data][unit_amount]": "330000",
        "line_items[0][price_data][product_data][name]": "100 GPU-hours H100-80GB",
        "success_url": BACK,
        "cancel_url": BACK,
        "metadata[kind]": "hour_pack",
        "metadata[hour_pack_id]": str(pack.pk),
        "metadata[organisation_id]": str(org.pk),
        "payment_intent_data[metadata][kind]": "hour_pack",
        "payment_intent_data[metadata][hour_pack_id]": str(pack.pk),
        "payment_intent_data[metadata][organisation_id]": str(org.pk),
    }
    assert HourPack.objects.get(pk=pack.pk).checkout_session_id == "cs_test_2"


def pack_url(recorder) -> str:
    return f"https://pay.test/cs_test_{len(recorder.requests)}"


def test_a_large_pack_is_not_offered_payco_or_samsung_pay(db, recorder):
    rate_card("startup", 3000)
    org, owner = startup()
    payments.hour_pack_checkout_start(
        organisation=org, user=owner, gpu_model="H100-80GB", gpu_hours=1000, success_url=BACK, cancel_url=BACK
    )
    form = recorder.find("/v1/checkout/sessions")[0]["form"]
    methods = [v for k, v in form.items() if k.startswith("payment_method_types")]
    assert (form["line_items[0][price_data][unit_amount]"], methods) == (
        "3300000",
        ["card", "kr_card", "kakao_pay", "naver_pay"],
    )


def test_saving_a_card_is_a_setup_mode_checkout_without_payco_or_samsung_pay(db, recorder):
    org, owner = startup()
    payments.card_checkout_start(organisation=org, user=owner, success_url=BACK, cancel_url=BACK)
    form = recorder.find("/v1/checkout/sessions")[0]["form"]
    assert form["mode"] == "setup" and form["currency"] == "krw"
    assert [v for k, v in form.items() if k.startswith("payment_method_types")] == [
        "card",
        "kr_card",
        "kakao_pay",
        "naver_pay",
    ]


def test_a_plain_member_cannot_buy_hours_and_nothing_is_sent(db, recorder):
    rate_card("startup", 3000)
    org, _owner = startup()
    member = MembershipFactory(organisation=org).user
    with pytest.raises(PortalError):
        payments.hour_pack_checkout_start(
            organisation=org, user=member, gpu_model="H100-80GB", gpu_hours=10, success_url=BACK, cancel_url=BACK
        )
    assert recorder.requests == [] and not HourPack.objects.exists()


CUSTOMER_GONE = (
    400,
    {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "param": "customer",
        "message": "No such customer: 'cus_recorded'",
    },
    "req_refused_4711",
)
AMOUNT_REFUSED = (
    400,
    {
        "type": "invalid_request_error",
        "code": "amount_too_large",
        "param": "line_items[0][price_data][unit_amount]",
        "message": "Amount must be no more than ₩99,999,999.",
    },
    "req_refused_4711",
)


def test_a_checkout_stripe_refuses_says_the_payment_could_not_be_started_not_that_it_is_unreachable(
    client, db, recorder, caplog
):
    rate_card("startup", 3000)
    org, owner = startup()
    recorder.checkout_refusal = AMOUNT_REFUSED
    client.force_login(owner)
    url = f"/billing/hour-packs/?organisation={org.pk}"
    response = client.post(url, {"gpu_model": "H100-80GB", "gpu_hours": "37"}, HTTP_ACCEPT_LANGUAGE="en")
    page = response.content.decode()
    assert response.status_code == 400
    assert "The payment could not be started" in page and "finance team" in page and "req_refused_4711" in page
    assert "not reachable" not in page and 'value="37"' in page  # the form keeps what was typed
    assert list(HourPack.objects.values_list("status", flat=True)) == [HourPack.Status.CANCELLED]
    # Staff find the refusal, with Stripe's request id, in the log.
    [logged] = [r for r in caplog.records if r.name == "billing.services.payments" and r.levelname == "ERROR"]
    assert "req_refused_4711" in logged.getMessage() and "amount_too_large" in logged.getMessage()
    korean = client.post(url, {"gpu_model": "H100-80GB", "gpu_hours": "37"}, HTTP_ACCEPT_LANGUAGE="ko")
    assert korean.status_code == 400 and "결제를 시작하지 못했습니다" in korean.content.decode()


def test_an_invoice_checkout_stripe_refuses_is_explained_on_the_invoices_page_not_as_an_outage(client, db, recorder):
    from datetime import date

    from billing.models import Invoice
    from billing.services.invoices import invoice_issue
    from tests.billing.helpers import at, grant_for

    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    # Not the amount (that makes the invoice payable by transfer: tests/billing/test_small_amounts.py)
    recorder.checkout_refusal = CUSTOMER_GONE
    client.force_login(owner)
    response = client.post(f"/billing/invoices/{invoice.pk}/pay/", HTTP_ACCEPT_LANGUAGE="en", follow=True)
    page = response.content.decode()
    assert response.status_code == 200 and response.redirect_chain
    assert "The payment could not be started" in page and "req_refused_4711" in page
    assert "Payment service unavailable" not in page
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.OPEN
