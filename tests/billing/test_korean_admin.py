"""Korean finance staff read an invoice in the admin in Korean: its lines titled in Korean with
grouped numbers (not "1: grant 1 subsidised 12960 min …"), the period's start as "시작" (not
"이전", the word for an earlier status), and the reasons the billing services wrote ("issued",
"bank transfer of … received") in Korean, while what is stored stays as it was."""

from datetime import date

from django.utils import timezone, translation

from allocations.models import Grant, GrantEvent
from billing.models import InvoiceEvent
from billing.services.invoices import invoice_issue
from billing.services.transfers import bank_transfer_record
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.portal.test_review_admin import staff_user

KO = {"HTTP_ACCEPT_LANGUAGE": "ko"}


def issued_invoice():
    rate_card("startup", 3000)
    org, _ = startup()
    # Nine days of one GPU: 12,960 GPU-minutes.
    grant = grant_for(org, intervals=[(at(2, 9), at(11, 9))], hours=1000)
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    return invoice, grant


def test_an_invoice_s_lines_and_events_read_in_korean_with_grouped_numbers(client, db):
    invoice, grant = issued_invoice()
    finance = staff_user(
        "finance@centre.kr", "billing.view_invoice", "billing.view_invoiceline", "billing.view_invoiceevent",
        "billing.view_banktransfer", "billing.record_transfer",
    )  # fmt: skip
    bank_transfer_record(
        invoice_id=invoice.pk, actor=finance, amount_krw=invoice.amount_due_krw, received_on=timezone.localdate(),
        reference="KB-20261203-1",
    )  # fmt: skip
    client.force_login(finance)
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/", **KO).content.decode()
    # The line's row title and columns: Korean, grouped.
    assert f"지원 과제 #{grant.pk} · 지원 시간(자부담) · 12,960 GPU 분 · ₩" in page
    assert "subsidised 12960 min" not in page and ": grant " not in page
    assert ">12,960<" in page.replace("</td>", "<").replace('<td class="field-gpu_minutes_shown"><p>', ">")
    # The period's start is "시작", not "이전" (the events' old status keeps "이전 상태").
    assert '<th class="column-period_start">시작' in page and '<th class="column-period_start">이전' not in page
    # The reasons the services wrote, in Korean; the stored text is unchanged.
    assert "발행됨" in page and ">issued<" not in page
    assert "계좌 이체 ₩" in page and "bank transfer of ₩" not in page
    stored = list(InvoiceEvent.objects.filter(invoice=invoice).values_list("reason", flat=True))
    assert stored[0] == "issued" and stored[-1].startswith("bank transfer of ₩")
    english = client.get(f"/admin/billing/invoice/{invoice.pk}/change/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "bank transfer of ₩" in english and "12,960 GPU-minutes" in english


def test_reasons_of_old_rows_show_translated_and_typed_text_stays_as_typed():
    """Rows written before: a phrase with what finance typed, a payment reference appended by
    invoice_mark_paid, a payment to refund around another phrase, and text nobody listed."""
    from billing.reasons import INVOICE_REASONS

    with translation.override("ko"):
        assert INVOICE_REASONS.show("void: duplicate of a bank transfer") == "무효: duplicate of a bank transfer"
        assert INVOICE_REASONS.show("payment succeeded [pi_123]") == "결제 성공 [pi_123]"
        assert INVOICE_REASONS.show("paid again, to refund: payment succeeded [pi_9]") == (
            "중복 결제됨, 환불 필요: 결제 성공 [pi_9]"
        )
        assert INVOICE_REASONS.show("something finance wrote") == "something finance wrote"
        assert INVOICE_REASONS.show("") == ""
    with translation.override("en"):
        assert INVOICE_REASONS.show("void: late") == "void: late"


def test_a_grant_s_status_reason_and_events_read_in_korean(client, db):
    """ "access is ready" (written when provisioning finishes) and "suspended: invoice overdue"
    (written by the billing consequences) on the grant's admin page."""
    from allocations.services.grants import grant_after_tasks, grant_suspend
    from billing.services.consequences import OVERDUE_REASON

    org, _ = startup()
    grant = grant_for(org, status=Grant.Status.PROVISIONING, hours=12000)
    grant_after_tasks(grant_id=grant.pk)
    grant.refresh_from_db()
    assert GrantEvent.objects.filter(grant=grant).last().reason == "access is ready"
    staff = staff_user("operator@centre.kr", "allocations.view_grant", "allocations.view_grantevent")
    client.force_login(staff)
    page = client.get(f"/admin/allocations/grant/{grant.pk}/change/", **KO).content.decode()
    assert "접속 준비 완료" in page and "access is ready" not in page
    assert "12,000" in page  # the awarded GPU-hours, grouped
    grant_suspend(grant=grant, actor=None, reason=OVERDUE_REASON)
    page = client.get(f"/admin/allocations/grant/{grant.pk}/change/", **KO).content.decode()
    assert page.count("일시 중지: 청구서 연체") == 2  # the status reason and the event
    assert Grant.objects.get(pk=grant.pk).status_reason == OVERDUE_REASON  # billing still finds it
    # Column headers of the events: Korean, not "CREATED AT" / "ACTOR".
    assert '<th class="column-created_at">생성 일시' in page and '<th class="column-actor">수행자' in page


def test_titles_of_billing_rows_read_in_korean_with_grouped_numbers():
    from billing.models import HourPack, Invoice, InvoiceLine, Rate

    with translation.override("ko"):
        line = InvoiceLine(grant_id=7, kind="billable", gpu_minutes=12960, amount_krw=1234567)
        assert str(line) == "지원 과제 #7 · 과금 시간 · 12,960 GPU 분 · ₩1,234,567"
        assert str(InvoiceEvent(old_status="open", new_status="paid")) == "미납 → 납부 완료"
        assert str(HourPack(gpu_hours=12000, gpu_model_id="H100-80GB", status="paid")) == (
            "H100-80GB 12,000 GPU 시간 (납부 완료)"
        )
        rate = Rate(
            gpu_model_id="H100-80GB", price_tier="startup", krw_per_gpu_hour=3000, effective_from=date(2026, 1, 1)
        )
        assert "₩3,000" in str(rate) and "from" not in str(rate)
        assert "명세서" in str(Invoice(pk=4, month=date(2026, 11, 1)))


def test_what_the_services_store_and_log_names_an_invoice_in_english_whatever_the_language(db):
    """A statement's title is translated where it is shown (`str`), but the monthly job runs in
    the portal's default language (Korean) and a Korean operator's `run_invoicing` too: the run's
    lines and the stored reasons keep the English of the rest of their text."""
    from billing.models import Invoice
    from billing.services.invoices import invoices_run
    from tests.billing.test_invoicing import paid_pack

    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, hours=1, intervals=[(at(2, 9, month=10), at(2, 10, month=10)), (at(3, 9), at(3, 15))])
    paid_pack(org, 100, at(1, 0, month=10))
    invoice_issue(organisation_id=org.pk, month=date(2026, 10, 1), today=date(2026, 11, 1))
    lines = []
    with translation.override("ko"):
        invoices_run(month=date(2026, 11, 1), today=date(2026, 12, 1), out=lines.append)
        statement = Invoice.objects.get(organisation=org, month=date(2026, 11, 1))
        assert statement.is_statement and "명세서" in str(statement)
    assert any(f"2026-11 statement #{statement.pk} ₩0 issued" in line for line in lines), lines
    assert not any("명세서" in line for line in lines), lines


def test_a_failed_steps_name_is_stored_in_english_and_read_in_the_readers_language(db):
    """The worker runs in the portal's default language (Korean): the failed step's name was
    stored in Korean inside an English reason, so English readers saw "계정 생성 failed: …"."""
    from allocations.models import ProvisioningTask
    from allocations.services.grants import grant_after_tasks
    from tests.allocations.test_placement import online_node

    org, _ = startup()
    grant = grant_for(org, status=Grant.Status.PROVISIONING)
    ProvisioningTask.objects.create(
        node=online_node("gpu-01"), grant=grant, kind=ProvisioningTask.Kind.ENSURE_ACCOUNT, payload={},
        state=ProvisioningTask.State.FAILED, last_error="useradd: uid 1001 taken",
    )  # fmt: skip
    with translation.override("ko"):
        grant_after_tasks(grant_id=grant.pk)
    grant.refresh_from_db()
    assert grant.status_reason == "Create account failed: useradd: uid 1001 taken"
    with translation.override("en"):
        assert grant.status_reason_text == "Create account failed: useradd: uid 1001 taken"
    with translation.override("ko"):
        shown = grant.status_reason_text
    assert "Create account" not in shown and "계정" in shown and shown.endswith("useradd: uid 1001 taken")


def test_a_statement_named_in_a_stored_reason_reads_in_the_readers_language():
    """The reason is stored with the statement's English reference (Invoice.reference); Korean
    finance reads the statement's Korean name inside the Korean reason."""
    from billing.reasons import INVOICE_REASONS

    stored = "re-issued as 2026-11 statement #5: wrong rate"
    with translation.override("ko"):
        shown = INVOICE_REASONS.show(stored)
    assert "2026-11 이용 명세서 #5" in shown and "statement" not in shown and shown.endswith("wrong rate")
    with translation.override("en"):
        assert INVOICE_REASONS.show(stored) == stored


def test_an_invoice_e_mail_names_its_invoice_by_number_and_its_audience_in_words(client, db):
    """Finance read "Audience: Dotted path of the function…
    billing.services.recipients.invoice_audience" and "Invoice #1" (a database id)."""
    from billing.services.recipients import INVOICE_AUDIENCE
    from portal.models import Mailing

    invoice, _grant = issued_invoice()
    mailing = Mailing.objects.create(
        template="invoice_issued", audience=INVOICE_AUDIENCE, organisation=invoice.organisation,
        refs={"invoice": ["billing.invoice", invoice.pk]},
    )  # fmt: skip
    client.force_login(staff_user("finance@centre.kr", "portal.view_mailing"))
    for language, audience in (("ko", "활동 중인 결제 담당자"), ("en", "active billing members")):
        page = client.get(f"/admin/portal/mailing/{mailing.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
        text = page.content.decode()
        assert invoice.number and invoice.number in text, language
        assert audience in text and "invoice_audience" not in text and "Dotted path" not in text, language


def test_a_payments_reference_stays_at_the_end_of_the_korean_reason():
    """ "계좌 이체 ₩171,072 입금(2026-11-30), f@x.kr [transfer DEMO-1] 님이 기록함": the reference
    had been read as part of the e-mail address."""
    from billing.reasons import INVOICE_REASONS

    stored = "bank transfer of ₩171,072 received 2026-11-30, recorded by f@x.kr [transfer DEMO-1]"
    with translation.override("ko"):
        shown = INVOICE_REASONS.show(stored)
    assert shown.endswith(" [transfer DEMO-1]") and "f@x.kr [" not in shown and "f@x.kr" in shown, shown
    with translation.override("en"):
        assert INVOICE_REASONS.show(stored) == stored
