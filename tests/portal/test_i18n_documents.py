"""E-mails and PDFs read well in the reader's language: every string a mail template marks for
translation has a Korean translation, each mail rendered for a Korean reader carries no English
sentence (and differs from the English one); the invoice and credit note PDFs, one stored
document for every reader, carry every label in Korean and in English (docs/billing.md)."""

import re
import subprocess
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.template import Context
from django.template.base import TextNode
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


def catalogue_key(node) -> str | None:
    """The catalogue key (msgctxt\\x04msgid) of a {% translate %} / {% blocktranslate %} node."""
    if isinstance(node, TranslateNode):
        msgid = str(node.filter_expression.var.literal)
    elif isinstance(node, BlockTranslateNode):
        msgid = node.render_token_list(node.singular)[0]
    else:
        return None
    context = node.message_context.resolve(Context()) if node.message_context else None
    return f"{context}\x04{msgid}" if context else msgid


def marked_strings(template_name: str) -> list[str]:
    """The catalogue keys of every string the template marks for translation."""
    return [key for node in walk(get_template(template_name).template.nodelist) if (key := catalogue_key(node))]


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


PDF_TEMPLATES = sorted(f"billing/{p.name}" for p in (ROOT / "templates/billing").glob("*pdf*.html"))
PLACEHOLDERS = {"percent": 10, "number": "INV-2026-000001", "month": "2026-11", "due": "₩55", "min": "₩1,000"}


def labels_and_text(template_name: str) -> tuple[list[tuple[str, bool]], str]:
    """Each marked string of the template with whether it sits inside `{% both %}`, and the
    template's own text outside any tag (markup and style removed)."""
    from billing.templatetags.bilingual import BothNode

    labels, text = [], []

    def visit(nodelist, inside: bool) -> None:
        for node in nodelist:
            if isinstance(node, TextNode):
                text.append(node.s)
            elif key := catalogue_key(node):
                labels.append((key, inside))
            for attr in getattr(node, "child_nodelists", ()):
                visit(getattr(node, attr, None) or [], inside or isinstance(node, BothNode))

    visit(get_template(template_name).template.nodelist, False)
    bare = re.sub(r"<style>.*?</style>", " ", "".join(text), flags=re.S)
    return labels, re.sub(r"<[^>]*>|&\w+;", " ", bare)


def korean_and_english(key: str) -> tuple[str, str]:
    """The label as the PDF prints it in each language (placeholders filled)."""
    korean = trans_real.translation("ko")._catalog.get(key, "")
    return korean % PLACEHOLDERS, key.split("\x04")[-1] % PLACEHOLDERS


def pdf_text(pdf: bytes) -> str:
    """The PDF's text in drawing order, whitespace removed (labels wrap inside table cells)."""
    raw = subprocess.run(["pdftotext", "-raw", "-", "-"], input=pdf, capture_output=True, check=True).stdout
    return re.sub(r"\s+", "", raw.decode())


def squeeze(label: str) -> str:
    return re.sub(r"\s+", "", label)


def assert_every_label_printed_in_both_languages(text: str, *template_names: str, but: tuple = ()) -> None:
    for name in template_names:
        for key, _inside in labels_and_text(name)[0]:
            for printed in korean_and_english(key) if key not in but else ():
                assert squeeze(printed) in text, (key, printed)


@pytest.mark.parametrize("template_name", PDF_TEMPLATES)
def test_every_label_of_the_pdfs_is_in_korean_and_in_english(template_name):
    """No label printed in one language only: each marked string sits in `{% both %}` and has a
    Korean translation (Hangul, not the English again); the template holds no bare words."""
    labels, bare = labels_and_text(template_name)
    assert [key for key, inside in labels if not inside] == []
    for key, _inside in labels:
        korean, english = korean_and_english(key)
        assert HANGUL.search(korean) and korean != english, key
    assert re.findall(r"[A-Za-z가-힣]+", bare) == [], template_name


@pytest.mark.django_db
def test_the_invoice_pdf_prints_every_label_in_both_languages_whatever_the_readers_language():
    """One stored document for every reader: the same text rendered under Korean or English, each
    label and line kind in both languages, amounts as ₩ with separators, ISO dates; an invoice
    frozen before English names were kept still prints its Korean names."""
    from billing.pdf import invoice_pdf
    from billing.services.invoices import invoice_issue
    from tests.billing.helpers import at, grant_for, rate_card, startup

    rate_card("startup", 3000)
    org, _ = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    with translation.override("en"):
        text = pdf_text(invoice_pdf(invoice))
    with translation.override("ko"):
        assert pdf_text(invoice_pdf(invoice)) == text
    assert_every_label_printed_in_both_languages(
        text,
        "billing/invoice_pdf.html",
        "billing/_pdf_parties.html",
        # a ₩0 statement's heading; a re-issue's line (tests/billing/test_reissue.py reads it); what
        # only an invoice collecting or carrying small amounts prints (tests/billing/test_small_amounts.py)
        but=(
            "Statement (nothing to pay)",
            "Replaces invoice %(number)s, which is void.",
            "Carried forward from earlier invoices",
            "These amounts were below the smallest card payment: they were issued and taxed on their own invoices "
            "and are collected with this one.",
            "Amount due (this invoice and amounts carried forward)",
            "Carried forward: %(due)s is below the smallest card payment (%(min)s). It is not charged now and has no "
            "due date: it is added to the organisation's next invoice. If no further invoice follows, the centre "
            "settles it with the organisation (bank transfer, or a credit note).",
        ),
    )
    for printed in ("지원 시간(자부담)", "Subsidised hours (co-payment)", "청구서/Invoice"):
        assert squeeze(printed) in text, printed
    for printed in (f"₩{invoice.total_krw:,}", "₩6,000", "₩600", "2026-12-01", "2026-12-15", "2026-11-0209:00"):
        assert printed in text, printed
    assert (org.name_ko in text, squeeze(org.name_en) in text) == (True, True)
    invoice.supplier_name_en = invoice.buyer_name_en = ""  # issued before the English names
    older = pdf_text(invoice_pdf(invoice))
    assert org.name_ko in older and squeeze(org.name_en) not in older and "None" not in older


def test_the_credit_note_pdf_prints_every_label_in_both_languages():
    from billing.pdf import credit_note_pdf

    invoice = SimpleNamespace(
        number="INV-2026-000001", month=date(2026, 11, 1), vat_percent=10, supplier_name="국가AI컴퓨팅센터",
        supplier_name_en="National AI Computing Centre", supplier_brn="1208147521", buyer_name="주식회사 테스트",
        buyer_name_en="Test Inc.", buyer_brn="2208162517",
    )  # fmt: skip
    note = SimpleNamespace(
        number="CN-2026-000001", invoice=invoice, issued_on=date(2026, 12, 20), reason="노드 장애",
        supply_krw=-6000, vat_krw=-600, total_krw=-6600,
    )  # fmt: skip
    with translation.override("en"):
        text = pdf_text(credit_note_pdf(note))
    assert_every_label_printed_in_both_languages(text, "billing/credit_note_pdf.html", "billing/_pdf_parties.html")
    for printed in ("-₩6,000", "-₩600", "-₩6,600", "2026-12-20", "220-81-62517", "TestInc."):
        assert printed in text, printed


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
