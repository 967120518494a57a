"""Findings of the outside review of billing (issue 11), each reproduced as a test: what its users
and attackers did, and what they must see."""

from __future__ import annotations

from datetime import date

from django.core import mail

from billing.models import Invoice, InvoiceLine, Rate
from billing.services.invoices import invoice_issue, invoices_run
from tests.billing.conftest import event
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.billing.test_attacks import checkout_paid, deliver
from tests.billing.test_attacks import two as two
from tests.billing.test_invoicing import paid_pack

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)


def test_a_month_invoiced_after_a_later_one_does_not_draw_a_pack_a_second_time(db):
    """October failed (no A100 rate yet) and November was invoiced; finance publishes the rate and
    reruns October, as docs/billing.md says. The 10 h pack must not give 12 h."""
    rate_card("startup", 3000)
    org, _ = startup()
    # 1 h subsidy at 20 %. October: 7 h of H100 and 1 h of A100 (no rate: the run fails);
    # November: 6 h of H100.
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    grant_for(org, hours=1, model="A100-80GB", intervals=[(at(5, 9, month=10), at(5, 10, month=10))])
    paid_pack(org, 10, at(1, 0, month=10))
    assert invoices_run(month=OCT, today=NOV)["failed"] == 1
    invoices_run(month=NOV, today=date(2026, 12, 1))
    Rate.objects.create(gpu_model="A100-80GB", price_tier="startup", krw_per_gpu_hour=2000, effective_from=OCT)
    assert invoices_run(month=OCT, today=date(2026, 12, 2))["issued"] == 1
    prepaid = InvoiceLine.objects.filter(invoice__organisation=org, kind="prepaid")
    assert sum(prepaid.values_list("gpu_minutes", flat=True)) == 600  # the whole pack, once
    # November drew 6 h first; October gets the 4 h left, the rest billed: H100 1 h subsidised
    # (600) + 2 h billable (6,000); A100 1 h subsidised at 20 % of 2,000 (400).
    october = Invoice.objects.get(organisation=org, month=OCT)
    assert october.supply_krw == 7000


def test_invoice_and_subsidy_e_mails_are_written_in_each_recipients_language(db, jobs):
    """An English-speaking billing member reads English; the Korean owner of another organisation
    reads Korean."""
    rate_card("startup", 3000)
    org, _ = startup()
    member = org.memberships.get(role="billing").user
    member.language = "en"
    member.save(update_fields=["language"])
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    jobs.run()
    [sent] = [m for m in mail.outbox if m.to == [member.email]]
    assert sent.subject == f"Invoice {invoice.number} for 2026-11", sent.subject
    korean = [m for m in mail.outbox if m.to == [org.memberships.get(role="owner").user.email]]
    assert korean == []  # the owner hears nothing while there is a billing member


def test_the_subsidy_alert_is_written_in_the_recipients_language(db, jobs):
    from billing.services.consequences import grant_subsidy_check

    rate_card("startup", 3000)
    org, owner = startup()
    owner.language = "en"
    owner.save(update_fields=["language"])
    grant = grant_for(org, hours=10, intervals=[(at(2, 9), at(2, 18))])  # 9 of 10 h: 90 %
    with jobs.committed():
        grant_subsidy_check(grant_id=grant.pk, now=at(3, 0))
    jobs.run()
    to_owner = [m.subject for m in mail.outbox if m.to == [owner.email]]
    to_member = [m.subject for m in mail.outbox if m.to == [org.memberships.get(role="billing").user.email]]
    assert to_owner == [f"Grant #{grant.pk}: 80 % of the subsidised GPU-hours used"]
    assert to_member == [f"지원 과제 #{grant.pk}: 지원 GPU 시간의 80 % 사용"]


def _finance(client, *perms):
    from tests.portal.test_review_admin import staff_user

    client.force_login(staff_user("finance@centre.kr", *perms))
    return client


RATE_PERMS = ("billing.view_rate", "billing.add_rate", "billing.change_rate")


def test_finance_cannot_publish_a_rate_that_reprices_time_already_used(client, db):
    """A rate in effect since January priced every minute since: a new H100 rate dated yesterday
    (or a scheduled one moved to yesterday) would re-price time already used this month (what
    "this month so far" showed, what the invoice will say). Publishing a rate where none was in
    effect (docs: a month FAILED for a missing rate: publish it and run again) stays possible."""
    from datetime import timedelta

    from django.utils import timezone

    rate_card("startup", 3000)
    scheduled = rate_card("startup", 3300, since=timezone.localdate() + timedelta(days=10))
    _finance(client, *RATE_PERMS)
    yesterday = f"{timezone.localdate() - timedelta(days=1):%Y-%m-%d}"
    form = {"gpu_model": "H100-80GB", "price_tier": "startup", "krw_per_gpu_hour": "9000"}
    refused = client.post("/admin/billing/rate/add/", {**form, "effective_from": yesterday})
    assert refused.status_code == 200 and refused.context["adminform"].form.errors
    moved = client.post(f"/admin/billing/rate/{scheduled.pk}/change/", {**form, "effective_from": yesterday})
    assert moved.status_code == 200 and moved.context["adminform"].form.errors
    assert sorted(Rate.objects.values_list("krw_per_gpu_hour", flat=True)) == [3000, 3300]
    # A GPU model without any rate yet: published from the start of last month, as the docs say.
    missing = {**form, "gpu_model": "A100-80GB", "effective_from": "2026-10-01"}
    assert client.post("/admin/billing/rate/add/", missing).status_code == 302
    tomorrow = f"{timezone.localdate() + timedelta(days=1):%Y-%m-%d}"
    assert client.post("/admin/billing/rate/add/", {**form, "effective_from": tomorrow}).status_code == 302


def test_the_invoice_export_neither_runs_formulas_nor_garbles_korean_names_in_a_spreadsheet(client, db):
    """An organisation names itself like a spreadsheet formula; finance opens the CSV export in
    Excel (Korean Windows), which reads a CSV without a byte order mark as CP949."""
    rate_card("startup", 3000)
    org, _ = startup(name_ko='=HYPERLINK("evil","주식회사")')
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    _finance(client, "billing.view_invoice")
    export = client.post("/admin/billing/invoice/", {"action": "export_csv", "_selected_action": [invoice.pk]})
    content = export.content.decode("utf-8")
    assert content.startswith("\ufeff")
    import csv
    import io

    [header, row] = list(csv.reader(io.StringIO(content.lstrip("\ufeff"))))
    assert row[header.index("organisation")] == '\'=HYPERLINK("evil","주식회사")'
    assert row[header.index("total_krw")] == str(invoice.total_krw)


def test_a_second_payment_of_a_paid_invoice_is_recorded_as_to_refund(client, two):
    """The saved card's retry charge paid the invoice (pi_card) while the billing member had a
    Checkout page open for it; the member then pays there too (pi_checkout). The money came in
    twice: finance must see it to refund, not a quiet "invoice paid"."""
    inv = two["inv_a"]
    intent = {
        "id": "pi_card", "object": "payment_intent", "amount": inv.total_krw, "currency": "krw",
        "customer": "cus_A", "metadata": {"kind": "invoice", "invoice_id": str(inv.pk)},
    }  # fmt: skip
    assert deliver(client, event("evt_card", "payment_intent.succeeded", intent)) == "invoice paid"
    # The same payment notified again (its Checkout twin names the same intent) is no refund.
    twice = checkout_paid(inv, id="cs_other", payment_intent="pi_card")
    assert deliver(client, event("evt_same", "checkout.session.completed", twice)) == "invoice paid"
    second = checkout_paid(inv, payment_intent="pi_checkout")
    assert deliver(client, event("evt_checkout", "checkout.session.completed", second)) == (
        "invoice already paid: payment to refund"
    )
    inv.refresh_from_db()
    assert inv.status == Invoice.Status.PAID and inv.events.filter(new_status="paid", old_status="open").count() == 1
    [refund] = inv.events.filter(reason__contains="to refund")
    assert "pi_checkout" in refund.reason


def test_finance_cannot_delete_a_rate_in_effect_through_the_bulk_delete_action(client, db):
    """A rate in effect has priced usage: its page refuses deletion, and so must the list's
    "Delete selected" action (which does not ask the page)."""
    in_effect = rate_card("startup", 3000)
    _finance(client, *RATE_PERMS, "billing.delete_rate")
    assert client.post(f"/admin/billing/rate/{in_effect.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(
        "/admin/billing/rate/", {"action": "delete_selected", "_selected_action": [in_effect.pk], "post": "yes"}
    )
    assert Rate.objects.filter(pk=in_effect.pk).exists()


# -- checks that held (kept as guards) -------------------------------------------------------------


def _paid_invoice() -> Invoice:
    from billing.services.invoices import invoice_mark_paid

    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    return invoice_mark_paid(invoice_id=invoice.pk, reason="bank transfer")


def test_void_and_credit_need_the_csrf_token_and_a_reason(db):
    from django.test import Client

    from billing.models import CreditNote
    from tests.portal.test_review_admin import staff_user

    paid = _paid_invoice()
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    unpaid, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    finance = staff_user(
        "finance@centre.kr", "billing.view_invoice", "billing.void_invoice", "billing.issue_credit_note"
    )
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(finance)
    assert forged.post(f"/admin/billing/invoice/{unpaid.pk}/void/", {"reason": "x"}).status_code == 403
    assert forged.post(f"/admin/billing/invoice/{paid.pk}/credit/", {"reason": "x"}).status_code == 403
    client = Client()
    client.force_login(finance)
    for url in (f"/admin/billing/invoice/{unpaid.pk}/void/", f"/admin/billing/invoice/{paid.pk}/credit/"):
        page = client.post(url, {"reason": "   "})
        assert page.status_code == 200 and page.context["form"].errors, url
    unpaid.refresh_from_db()
    assert unpaid.status == Invoice.Status.OPEN and not CreditNote.objects.exists()


def test_credit_notes_are_404_for_plain_members_other_owners_removed_members_and_reviewers(client, db):
    from billing.services.credit_notes import credit_note_issue
    from portal.models import Membership
    from tests.factories import MembershipFactory, UserFactory
    from tests.portal.test_review_admin import staff_user

    paid = _paid_invoice()
    note = credit_note_issue(
        invoice_id=paid.pk, actor=staff_user("f@centre.kr", "billing.issue_credit_note"), reason="outage"
    )
    org = paid.organisation
    plain = MembershipFactory(organisation=org, role=Membership.Role.MEMBER, user=UserFactory()).user
    _other, other_owner = startup()
    removed = org.memberships.get(role=Membership.Role.BILLING).user
    org.memberships.filter(user=removed).delete()
    reviewer = staff_user("reviewer@centre.kr", "portal.view_application", "billing.view_invoice")
    for who in (plain, other_owner, removed, reviewer):
        client.force_login(who)
        assert client.get(f"/billing/credit-notes/{note.pk}/pdf/").status_code == 404, who
        assert note.number not in client.get(f"/billing/invoices/?organisation={org.pk}").content.decode()


def test_a_void_invoices_prepaid_hours_return_to_the_pack_for_the_next_month(db):
    from billing.services.invoices import invoice_void
    from tests.portal.test_review_admin import staff_user

    rate_card("startup", 3000)
    org, _ = startup()
    # 1 h subsidy; 10 h pack. October: 1 h subsidised (600) + 6 h prepaid; void. November: 6 h,
    # all from the pack again (the void invoice drew nothing).
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 16, month=10)), (at(3, 9), at(3, 15))])
    pack = paid_pack(org, 10, at(1, 0, month=10))
    october, _ = invoice_issue(organisation_id=org.pk, month=OCT, today=NOV)
    invoice_void(invoice_id=october.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="error")
    november, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    assert list(november.lines.values_list("kind", "gpu_minutes", "hour_pack")) == [("prepaid", 360, pack.pk)]
    assert november.is_statement


def test_signed_but_malformed_huge_or_unpaid_webhooks_change_nothing(client, db, stripe_settings):
    """Held: a correctly signed body that is not JSON, lacks fields, or is over 512 KiB gets 400 and
    is not stored; a completed Checkout whose payment_status is unpaid credits no pack."""
    import hashlib
    import hmac
    import time

    from billing.models import HourPack, StripeEvent
    from billing.services.payments import stripe_event_process
    from tests.billing.conftest import WEBHOOK_SECRET, signed

    def raw(body: bytes):
        ts = int(time.time())
        mac = hmac.new(WEBHOOK_SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return client.post(
            "/billing/stripe/webhook/", body, content_type="application/json",
            headers={"Stripe-Signature": f"t={ts},v1={mac}"},
        )  # fmt: skip

    assert raw(b"{not json").status_code == 400
    assert raw(b'{"id": "evt_x", "livemode": false}').status_code == 400
    huge = event("evt_huge", "ping", {"pad": "x" * 600_000})
    assert raw(signed(huge)[0]).status_code == 400
    assert not StripeEvent.objects.exists()

    org, owner = startup()
    pack = HourPack.objects.create(
        organisation=org, gpu_model="H100-80GB", gpu_hours=1, krw_per_gpu_hour=3000, supply_krw=3000,
        vat_krw=300, total_krw=3300, checkout_session_id="cs_unpaid", bought_by=owner,
    )  # fmt: skip
    unpaid = {
        "id": "cs_unpaid", "object": "checkout.session", "payment_status": "unpaid", "amount_total": 3300,
        "currency": "krw", "metadata": {"kind": "hour_pack", "hour_pack_id": str(pack.pk)},
    }  # fmt: skip
    body, _sig = signed(event("evt_unpaid", "checkout.session.completed", unpaid))
    assert raw(body).status_code == 200
    assert stripe_event_process(event_pk=StripeEvent.objects.get().pk) == "pack not paid yet"
    pack.refresh_from_db()
    assert pack.status == HourPack.Status.PENDING


def test_an_unexpected_error_for_one_organisation_does_not_stop_the_monthly_run(db, monkeypatch):
    """The periodic job runs once, on the 1st: one organisation whose invoice cannot be finished
    (here its PDF fails to render) must be reported FAILED while the others are invoiced, not
    leave every later organisation without an invoice until someone notices."""
    import billing.services.invoices as service

    rate_card("startup", 3000)
    first, second = startup()[0], startup()[0]
    for org in (first, second):
        grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    real = service.invoice_document_store

    def broken_for_the_first(*, invoice_id):
        if Invoice.objects.get(pk=invoice_id).organisation_id == first.pk:
            raise OSError("cannot load font")
        return real(invoice_id=invoice_id)

    monkeypatch.setattr(service, "invoice_document_store", broken_for_the_first)
    lines: list[str] = []
    counts = invoices_run(month=NOV, today=date(2026, 12, 1), out=lines.append)
    assert (counts["issued"], counts["failed"]) == (1, 1)
    assert any("FAILED" in x and f"organisation {first.pk}" in x for x in lines)
    assert list(Invoice.objects.values_list("organisation", "number")) == [(second.pk, "INV-2026-000001")]


def test_a_pack_dearer_than_stripe_takes_is_refused_on_the_form_not_as_an_outage(client, db, recorder):
    """Stripe takes at most 99,999,999 in a currency's smallest unit (₩99,999,999). The form
    allows 100,000 GPU-hours: 40,000 H100-hours at ₩3,000 + VAT is ₩132,000,000. Stripe would
    refuse it and the founder would read "the payment service is not reachable; try again later"
    (503). The form must say what is wrong, keep what was typed, and send nothing."""
    from billing.models import HourPack

    rate_card("startup", 3000)
    org, owner = startup()
    client.force_login(owner)
    page = client.post(f"/billing/hour-packs/?organisation={org.pk}", {"gpu_model": "H100-80GB", "gpu_hours": "40000"})
    assert page.status_code == 400
    assert "99,999,999" in page.content.decode() and 'value="40000"' in page.content.decode()
    assert recorder.requests == [] and not HourPack.objects.exists()


def test_finance_downloads_the_invoice_document_that_was_sent_from_the_admin(client, db):
    """Finance answers a buyer's question or the tax office with the document sent: the invoice's
    admin page links the stored PDF, which finance (billing.view_invoice) may download; other
    staff still get 404."""
    from billing.models import InvoiceDocument
    from tests.portal.test_review_admin import staff_user

    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice"))
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    assert f"/billing/invoices/{invoice.pk}/pdf/" in page
    pdf = client.get(f"/billing/invoices/{invoice.pk}/pdf/")
    assert pdf.status_code == 200 and pdf.content == bytes(InvoiceDocument.objects.get(invoice=invoice).content)
    client.force_login(staff_user("reviewer@centre.kr", "portal.view_application"))
    assert client.get(f"/billing/invoices/{invoice.pk}/pdf/").status_code == 404


def test_this_month_so_far_without_a_rate_is_really_reported_to_the_centre(client, db, caplog):
    """The invoices page tells the founder "a rate is missing. The centre has been told": the
    centre must hear it (an error in the log, naming the organisation and the GPU model)."""
    import logging

    from django.utils import timezone

    from allocations.models import AccessInterval

    rate_card("startup", 3000)
    org, owner = startup()
    grant = grant_for(org, model="A100-80GB")
    AccessInterval.objects.create(grant=grant, gpu_count=1, opened_at=timezone.now() - timezone.timedelta(minutes=5))
    client.force_login(owner)
    with caplog.at_level(logging.ERROR, logger="billing"):
        page = client.get("/billing/invoices/")
    assert "센터에 알렸습니다" in page.content.decode()  # "The centre has been told."
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and f"organisation {org.pk}" in errors[0].getMessage() and "A100-80GB" in errors[0].getMessage()
