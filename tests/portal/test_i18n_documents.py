"""E-mails and PDFs read well in the reader's language: every string a mail template marks for
translation has a Korean translation, each mail rendered for a Korean reader carries no English
sentence (and differs from the English one), and the invoice PDF is Korean by design (a Korean
tax document: docs/billing.md)."""

import re
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.template.loader import get_template, render_to_string
from django.templatetags.i18n import BlockTranslateNode, TranslateNode
from django.utils import timezone, translation
from django.utils.translation import trans_real

ROOT = Path(__file__).resolve().parents[2]
PORTAL_MAILS = sorted(
    f"emails/{p.name}" for p in (ROOT / "templates/emails").glob("*.txt") if not p.name.startswith("operators_")
)  # operators_notice goes to the centre's operators in English (allocations/services/findings.py)
ALLAUTH_MAILS = [
    f"account/email/{name}_{part}.txt"
    for name in ("email_confirmation_signup", "email_confirmation", "password_reset_key", "unknown_account",
                 "account_already_exists", "password_changed", "password_set", "email_changed")
    for part in ("subject", "message")
]  # fmt: skip
# Three English words in a row: a sentence the catalogue did not translate.
ENGLISH_RUN = re.compile(r"\b[A-Za-z][a-z']+(?:[ ,]+[A-Za-z][a-z']+){2,}")
HANGUL = re.compile(r"[가-힣]")
URL_OR_ADDRESS = re.compile(r"(https?://\S+|\S+@\S+)")


def walk(nodelist):
    for node in nodelist:
        yield node
        for attr in getattr(node, "child_nodelists", ()):
            yield from walk(getattr(node, attr, None) or [])


def marked_strings(template_name: str) -> list[str]:
    """The catalogue keys (msgctxt\\x04msgid) of every {% translate %} / {% blocktranslate %}."""
    keys = []
    for node in walk(get_template(template_name).template.nodelist):
        if isinstance(node, TranslateNode):
            msgid = str(node.filter_expression.var.literal)
        elif isinstance(node, BlockTranslateNode):
            msgid = node.render_token_list(node.singular)[0]
        else:
            continue
        context = node.message_context.var.literal if node.message_context else None
        keys.append(f"{context}\x04{msgid}" if context else msgid)
    return keys


@pytest.mark.parametrize("template_name", PORTAL_MAILS + ALLAUTH_MAILS)
def test_every_string_of_every_mail_has_a_korean_translation(template_name):
    catalogue = trans_real.translation("ko")._catalog
    missing = [key for key in marked_strings(template_name) if not catalogue.get(key)]
    assert missing == []


def the_mails_contexts() -> list[tuple[str, dict]]:
    """Each portal mail with a context that takes each of its branches; values are Korean, so
    English in the output can only come from the template."""
    when = timezone.make_aware(datetime(2026, 12, 1, 9, 0))
    grant = SimpleNamespace(
        pk=41, gpu_count=2, gpu_hours=2000, get_gpu_model_display="H100 80GB", starts_on=date(2026, 12, 1),
        ends_on=date(2027, 5, 31), application=SimpleNamespace(title="한국어 모델 학습"), past_subsidy="grace",
    )  # fmt: skip
    invoice = SimpleNamespace(
        pk=5, number="INV-2026-000123", month=date(2026, 11, 1), supply_krw=1234567, vat_krw=123457,
        total_krw=1358024, due_on=date(2026, 12, 15), status="open", carried_krw=0, amount_due_krw=1358024,
        transfer_only=False,
    )  # fmt: skip
    base = {
        "site_url": "https://gpu.example.kr",
        "grant": grant,
        "invoice": invoice,
        "hours": 72,
        "threshold": 5,
        "percent": 100,
        "grace_hours": 48,
        "error": "카드 거절",
        "organisation": SimpleNamespace(name="서울대학교"),
        "inviter": SimpleNamespace(email="owner@snu.ac.kr"),
        "invitation": SimpleNamespace(get_role_display="구성원", expires_at=when),
        "link": "https://gpu.example.kr/invitations/abc/",
    }
    cases = []
    for status in ("approved", "returned", "rejected"):
        application = SimpleNamespace(
            pk=9, title="한국어 모델 학습", status=status, get_status_display="상태", grant=grant,
            call=SimpleNamespace(title="2026 하반기 공모"),
        )  # fmt: skip
        context = {**base, "application": application, "event": SimpleNamespace(reason="검토 의견")}
        cases += [(name, context) for name in PORTAL_MAILS if name.startswith("emails/application_status")]
    for past in ("grace", "billable", "suspend"):
        context = {**base, "grant": SimpleNamespace(**{**vars(grant), "past_subsidy": past})}
        cases += [(name, context) for name in PORTAL_MAILS if name.startswith("emails/subsidy_threshold")]
    others = [n for n in PORTAL_MAILS if not n.startswith(("emails/application_status", "emails/subsidy_threshold"))]
    cases += [(name, base) for name in others]
    # After the plain cases (the first of each mail is the plain one): an invoice carried forward
    # (below the smallest card payment), one collecting earlier amounts, one paid by bank transfer.
    for change in (
        {"status": "carried", "total_krw": 55, "supply_krw": 50, "vat_krw": 5, "amount_due_krw": 55},
        {"carried_krw": 55, "amount_due_krw": 1358079},
        {"transfer_only": True},
    ):
        context = {**base, "invoice": SimpleNamespace(**{**vars(invoice), **change}), "bank_account": "국민은행 123-45"}
        cases += [(name, context) for name in PORTAL_MAILS if name.startswith("emails/invoice_issued")]
    return cases


@pytest.mark.parametrize(
    ("template_name", "context"), the_mails_contexts(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_each_mail_for_a_korean_reader_has_no_english_sentence_and_differs_from_the_english_one(template_name, context):
    with translation.override("ko"):
        korean = render_to_string(template_name, context)
    with translation.override("en"):
        english = render_to_string(template_name, context)
    assert ENGLISH_RUN.findall(URL_OR_ADDRESS.sub(" ", korean)) == []
    assert HANGUL.search(korean)
    assert korean != english


def test_amounts_and_hours_in_mails_follow_the_readers_locale():
    contexts = dict(reversed(the_mails_contexts()))  # the first context of each: "approved"
    with translation.override("ko"):
        korean = render_to_string("emails/invoice_issued_body.txt", contexts["emails/invoice_issued_body.txt"])
        award = render_to_string("emails/application_status_body.txt", contexts["emails/application_status_body.txt"])
    with translation.override("en"):
        english = render_to_string("emails/invoice_issued_body.txt", contexts["emails/invoice_issued_body.txt"])
    assert "1,358,024원" in korean and "₩1,358,024" in english
    assert "2,000" in award


@pytest.mark.django_db
def test_the_invoice_pdf_is_korean_whatever_the_readers_language(settings):
    """A Korean tax document: its labels are Korean even when rendered under English."""
    from billing.pdf import invoice_pdf
    from billing.services.invoices import invoice_issue
    from tests.billing.helpers import at, grant_for, rate_card, startup

    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    with translation.override("en"):
        pdf = invoice_pdf(invoice)
    text = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()
    labels = [marked for marked in marked_strings("billing/invoice_pdf.html")]
    catalogue = trans_real.translation("ko")._catalog
    assert [label for label in labels if not catalogue.get(label)] == []
    for korean in ("청구서", "공급자", "공급가액", "합계"):
        assert korean in text, korean
    assert ENGLISH_RUN.findall(text) == []
    assert f"{invoice.total_krw:,}원" in text


def test_grant_costs_print_hours_with_the_locales_grouping():
    from billing.services.estimates import GrantMonth

    month = GrantMonth(
        used_hours=Decimal("1009.4"), left_hours=Decimal("990.6"), accrued_krw=1500000, estimate_krw=2250000
    )
    for language in ("ko", "en"):
        with translation.override(language):
            html = render_to_string(
                "billing/_grant_costs.html", {"month": month, "grant": SimpleNamespace(gpu_hours=2000)}
            )
        assert "1,009.4 / 2,000" in html and "990.6" in html, language
    assert settings.LANGUAGE_CODE == "ko"
