"""Amounts Stripe cannot collect by card: below its minimum charge (₩55 from five minutes at a
20 % co-payment) the month's invoice is issued and numbered as usual but carried forward (not
charged, not due, never overdue) and collected with the organisation's next invoice; a refusal
by Stripe because of the amount is never a decline and never suspends anything."""

from __future__ import annotations

import subprocess
from datetime import date, timedelta

import pytest
import requests
from django.core import mail
from django.utils import timezone

from allocations.models import Grant
from billing import stripe_client
from billing.models import BillingAccount, Invoice
from billing.services import payments
from billing.services.consequences import invoices_enforce_overdue
from billing.services.invoices import invoice_issue, organisation_has_overdue_invoice
from portal.models import Membership, OutboxMessage
from tests.billing.helpers import at, grant_for, rate_card, startup

NOV, DEC = date(2026, 11, 1), date(2026, 12, 1)
I = Invoice.Status  # noqa: E741


def card_startup(card: str = "pm_card_visa"):
    rate_card("startup", 3000)
    org, owner = startup()
    account = payments.billing_account_get_or_create(organisation=org, email=owner.email)
    pm = stripe_client.payment_method_attach(customer=account.stripe_customer_id, payment_method=card)
    BillingAccount.objects.filter(pk=account.pk).update(default_payment_method=pm)
    return org


def intents(localstripe_url: str) -> list[dict]:
    got = requests.get(f"{localstripe_url}/v1/payment_intents", auth=("sk_test_portal", ""), timeout=5)
    return got.json()["data"]


def pdf_text(client, invoice, tmp_path) -> str:
    path = tmp_path / f"{invoice.pk}.pdf"
    path.write_bytes(client.get(f"/billing/invoices/{invoice.pk}/pdf/").content)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True).stdout


def issued_then_below_a_raised_minimum(jobs, settings):
    """A startup's ₩6,600 November invoice, issued with its announcement queued; then the minimum
    card charge raised to ₩10,000."""
    rate_card("startup", 3000)
    org, _owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    settings.STRIPE_MIN_CHARGE_KRW = 10_000
    return org, invoice


def billing_member(org):
    return org.memberships.get(role=Membership.Role.BILLING).user


def test_the_minimum_charge_is_a_setting_with_stripes_documented_floor_as_default(settings):
    # Stripe: at least USD 0.50 or the equivalent; KRW has no row of its own in Stripe's table.
    assert 700 <= settings.STRIPE_MIN_CHARGE_KRW <= 1000
    assert stripe_client.MAX_CHARGE_KRW == 99_999_999


def test_a_55_won_month_is_carried_forward_then_charged_with_the_next_month(db, localstripe, client, tmp_path):
    org = card_startup()
    # November: 5 minutes x 3,000/h x 20 % = 50 + VAT 5 = ₩55. December: 10 h = 6,000 + 600.
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))])
    nov, created = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert created and nov.total_krw == 55
    # Issued and numbered as usual (gapless series, VAT on the month), but not charged and not due.
    assert (nov.number, nov.status) == ("INV-2026-000001", I.CARRIED)
    assert not OutboxMessage.objects.filter(func="billing.jobs.invoice_charge_job").exists()
    assert payments.invoice_charge(invoice_id=nov.pk) == "not open"
    assert intents(localstripe) == []
    Invoice.objects.filter(pk=nov.pk).update(due_on=date(2026, 1, 1))  # long "past due": still nothing
    assert not organisation_has_overdue_invoice(org.pk)
    assert invoices_enforce_overdue() == []

    client.force_login(billing_member(org))
    page = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Carried forward" in page and "next invoice" in page
    assert f'action="/billing/invoices/{nov.pk}/pay/"' not in page  # no Pay button
    assert "다음 청구서" in pdf_text(client, nov, tmp_path)  # the PDF says it is carried forward

    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    nov.refresh_from_db()
    assert (dec.number, dec.status, dec.total_krw, dec.carried_krw, dec.amount_due_krw) == (
        "INV-2027-000001", I.OPEN, 6600, 55, 6655,
    )  # fmt: skip
    assert nov.carried_into_id == dec.pk and nov.status == I.CARRIED
    text = pdf_text(client, dec, tmp_path)
    assert "INV-2026-000001" in text and "₩55" in text and "₩6,655" in text
    assert "Carried forward from earlier invoices" in text and "이전 청구서에서 이월된 금액" in text

    assert payments.invoice_charge(invoice_id=dec.pk) == "paid"
    charged = intents(localstripe)
    assert [x["amount"] for x in charged] == [6655]  # every won once: 55 + 6,600, in one charge
    nov.refresh_from_db()
    dec.refresh_from_db()
    assert (nov.status, dec.status) == (I.PAID, I.PAID)
    assert nov.events.filter(new_status=I.PAID, reason__contains=dec.number).exists()
    # Rerunning either month changes nothing, and nothing is collected a second time.
    assert invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 2))[1] is False
    assert Invoice.objects.filter(carried_into=dec).count() == 1


def test_carried_amounts_that_stay_small_keep_being_carried_until_they_reach_the_minimum(db, localstripe):
    org = card_startup()
    jan = at(2, 9, month=1, year=2027)
    grant_for(
        org,
        intervals=[
            (at(2, 9), at(2, 9, 5)),
            (at(2, 9, month=12), at(2, 9, 5, month=12)),
            (jan, jan + timedelta(hours=10)),
        ],
    )
    _nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    assert (dec.status, dec.carried_krw, dec.amount_due_krw) == (I.CARRIED, 55, 110)
    january, _ = invoice_issue(organisation_id=org.pk, month=date(2027, 1, 1), today=date(2027, 2, 1))
    assert (january.carried_krw, january.amount_due_krw) == (110, 6710)
    assert payments.invoice_charge(invoice_id=january.pk) == "paid"
    assert [x["amount"] for x in intents(localstripe)] == [6710]
    assert set(Invoice.objects.filter(organisation=org).values_list("status", flat=True)) == {I.PAID}


def test_a_refusal_by_stripe_for_a_too_small_amount_is_not_a_decline_and_suspends_nothing(db, localstripe, settings):
    # The portal's minimum set too low (or Stripe's raised): Stripe itself refuses ₩55.
    settings.STRIPE_MIN_CHARGE_KRW = 1
    settings.INVOICE_OVERDUE_SUSPEND_DAYS = 14
    org = card_startup()
    grant = grant_for(org, intervals=[(at(2, 9), at(2, 9, 5))], node=True)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    assert invoice.status == I.OPEN
    mail.outbox.clear()
    assert payments.invoice_charge(invoice_id=invoice.pk) == "amount refused"
    invoice.refresh_from_db()
    assert invoice.status == I.CARRIED and invoice.payment_attempts == 0
    assert invoice.events.filter(reason__contains="amount_too_small").exists()
    assert not [m for m in mail.outbox if "실패" in m.subject or "failed" in m.subject.lower()]
    assert payments.invoices_charge_due(now=timezone.now() + timedelta(days=30)) == []
    Invoice.objects.filter(pk=invoice.pk).update(due_on=date(2026, 1, 1))
    assert invoices_enforce_overdue() == []
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    assert not organisation_has_overdue_invoice(org.pk)


def test_a_failed_payment_event_for_the_amount_is_not_a_decline_either(db, settings):
    from billing.models import StripeEvent

    rate_card("startup", 3000)
    org, _ = startup()
    settings.STRIPE_MIN_CHARGE_KRW = 1
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    intent = {
        "id": "pi_small",
        "object": "payment_intent",
        "amount": 55,
        "currency": "krw",
        "metadata": {"kind": "invoice", "invoice_id": str(invoice.pk)},
        "last_payment_error": {"code": "amount_too_small", "message": "Amount must convert to at least 50 cents."},
    }
    stored = StripeEvent.objects.create(
        event_id="evt_small",
        type="payment_intent.payment_failed",
        created=timezone.now(),
        payload={"data": {"object": intent}},
    )
    mail.outbox.clear()
    assert payments.stripe_event_process(event_pk=stored.pk) == "amount refused"
    invoice.refresh_from_db()
    assert invoice.status == I.CARRIED and invoice.last_payment_error == ""
    assert not mail.outbox


def test_an_invoice_is_never_sent_to_checkout_outside_the_card_limits(db, recorder):
    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    from portal.errors import PortalError

    with pytest.raises(PortalError):
        payments.invoice_checkout_start(invoice=invoice, user=owner, success_url="https://x/", cancel_url="https://x/")
    assert recorder.requests == []


def test_the_invoices_page_says_in_korean_what_happened_to_a_small_month(db, client):
    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))])
    invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    member = billing_member(org)
    member.language = "ko"
    member.save(update_fields=["language"])
    client.force_login(member)
    page = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "이월" in page and "다음 청구서에 이월하여" in page
    invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    page = client.get("/billing/invoices/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "INV-2027-000001에 포함되어 청구되었습니다" in page and "6,655원" in page


def test_voiding_the_invoice_that_collected_a_small_month_hands_it_to_the_next_invoice(db):
    from billing.services.invoices import invoice_void
    from tests.portal.test_review_admin import staff_user

    rate_card("startup", 3000)
    org, _ = startup()
    jan = at(2, 9, month=1, year=2027)
    small, december = (at(2, 9), at(2, 9, 5)), (at(2, 9, month=12), at(2, 19, month=12))
    grant_for(org, intervals=[small, december, (jan, jan + timedelta(hours=10))])
    nov, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    dec, _ = invoice_issue(organisation_id=org.pk, month=DEC, today=date(2027, 1, 1))
    finance = staff_user("finance@centre.kr", "billing.void_invoice")
    invoice_void(invoice_id=dec.pk, actor=finance, reason="wrong rate")
    nov.refresh_from_db()
    assert (nov.status, nov.carried_into_id) == (I.CARRIED, None)
    january, _ = invoice_issue(organisation_id=org.pk, month=date(2027, 1, 1), today=date(2027, 2, 1))
    assert (january.carried_krw, january.amount_due_krw) == (55, 6655)


def test_an_hour_pack_below_the_minimum_charge_is_refused_on_the_form(db, client, recorder, settings):
    settings.STRIPE_MIN_CHARGE_KRW = 5000
    rate_card("startup", 3000, since=date(2025, 1, 1))
    org, owner = startup()
    client.force_login(owner)
    response = client.post(
        "/billing/hour-packs/", {"organisation": org.pk, "gpu_model": "H100-80GB", "gpu_hours": "1"},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert response.status_code == 400 and "5,000" in response.content.decode()
    assert recorder.requests == []


def test_members_told_an_invoice_is_due_hear_when_it_is_carried_forward_instead(db, jobs, settings):
    """Issued as due on the 15th (₩6,600); the minimum card charge then raised to ₩10,000 and the
    daily pass carries the invoice forward: the billing member, told "due on …", now hears in
    their language that nothing is due for it and that it is added to the next invoice."""
    from billing.services.invoices import invoices_carry_below_minimum

    rate_card("startup", 3000)
    org, _owner = startup()
    member = billing_member(org)
    member.language = "en"
    member.save(update_fields=["language"])
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
    jobs.run()
    assert [m.to for m in mail.outbox] == [[member.email]] and "Due on 2026-12-15" in mail.outbox[0].body
    settings.STRIPE_MIN_CHARGE_KRW = 10_000
    with jobs.committed():
        assert invoices_carry_below_minimum() == [invoice.pk]
    jobs.run()
    carried = mail.outbox[1]
    assert carried.to == [member.email]
    assert carried.subject == f"Invoice {invoice.number} is carried forward to your next invoice"
    assert f"Invoice {invoice.number} (₩6,600) is below the smallest amount charged by card" in carried.body
    assert "Nothing is due for this invoice now." in carried.body
    # Said once: the next daily pass finds nothing to carry.
    with jobs.committed():
        assert invoices_carry_below_minimum() == []
    assert jobs.run() == 0 and len(mail.outbox) == 2


def test_an_invoice_carried_before_its_announcement_went_out_is_announced_once_as_carried(db, jobs, settings):
    """The e-mail announcing the invoice waited (a slow queue, a mail server down) while the
    daily pass carried the invoice forward: that e-mail, read when it is sent, already says so;
    a second e-mail saying the same is not sent."""
    from billing.services.invoices import invoices_carry_below_minimum
    from portal.models import Mailing

    org, invoice = issued_then_below_a_raised_minimum(jobs, settings)
    with jobs.committed():
        assert invoices_carry_below_minimum() == [invoice.pk]
    jobs.run()
    (announcement,) = mail.outbox
    assert announcement.to == [billing_member(org).email] and invoice.number in announcement.subject
    assert "다음 청구서에 이월" in announcement.body
    notice = Mailing.objects.get(template="invoice_carried")
    # RQ sent the announcement first (it was queued first); run the other way round, the notice
    # finds the announcement still to go out: skipped either way.
    assert notice.status == Mailing.Status.SKIPPED and "announcing invoice" in notice.reason


def test_the_carried_forward_notice_is_in_korean_and_skipped_once_the_invoice_is_void(db, jobs, settings):
    from billing.services.invoices import invoice_void, invoices_carry_below_minimum
    from portal.models import Mailing
    from tests.portal.test_review_admin import staff_user

    rate_card("startup", 3000)
    org, _owner = startup()
    other, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    grant_for(other, intervals=[(at(3, 9), at(3, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=DEC)
        second, _ = invoice_issue(organisation_id=other.pk, month=NOV, today=DEC)
    jobs.run()  # each announced: "due on …"
    mail.outbox.clear()
    settings.STRIPE_MIN_CHARGE_KRW = 10_000
    with jobs.committed():
        assert sorted(invoices_carry_below_minimum()) == sorted([invoice.pk, second.pk])
    # Finance voids the second before its notice went out: its members are not told.
    invoice_void(invoice_id=second.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="wrong buyer")
    jobs.run()
    (carried,) = [m for m in mail.outbox if "이월" in m.subject]
    assert carried.subject == f"청구서 {invoice.number}의 금액이 다음 청구서로 이월됩니다"
    assert f"청구서 {invoice.number}(6,600원)은(는) 카드 결제 최소 금액 미만이므로" in carried.body
    assert carried.to == [billing_member(org).email]
    assert "지금 이 청구서로 납부할 금액은 없습니다." in carried.body
    notice = Mailing.objects.get(template="invoice_carried", organisation=other)
    assert notice.status == Mailing.Status.SKIPPED and "void" in notice.reason


def test_a_carried_notice_sent_before_the_waiting_announcement_is_skipped_and_the_announcement_says_carried(
    db, jobs, settings
):
    from billing.services.invoices import invoices_carry_below_minimum
    from portal.mail import mailing_send
    from portal.models import Mailing

    _org, invoice = issued_then_below_a_raised_minimum(jobs, settings)
    invoices_carry_below_minimum()
    notice = Mailing.objects.get(template="invoice_carried")
    assert mailing_send(mailing_id=notice.pk) == Mailing.Status.SKIPPED  # a second worker took it first
    assert "still to go out" in Mailing.objects.get(pk=notice.pk).reason
    jobs.run()
    (announcement,) = mail.outbox
    assert invoice.number in announcement.subject and "다음 청구서에 이월" in announcement.body
