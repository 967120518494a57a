"""Korean and English: Korean by default, a switch on every page, a complete ko catalogue."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_pages_are_korean_by_default(client):
    body = client.get("/").content.decode()
    assert '<html lang="ko">' in body
    assert "국내 연구와 산업을 위한 GPU 컴퓨팅 지원" in body


@pytest.mark.django_db
def test_the_language_switch_on_every_page_changes_to_english_and_back(client):
    for path in ["/", "/calls/", "/rates/", "/accounts/login/"]:
        assert 'action="/i18n/setlang/"' in client.get(path).content.decode(), path
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/calls/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/calls/"
    assert "Calls for GPU time" in response.content.decode()
    response = client.post("/i18n/setlang/", {"language": "ko", "next": "/calls/"}, follow=True)
    assert "GPU 자원 지원 공모" in response.content.decode()


@pytest.mark.django_db
def test_allauth_pages_follow_the_language(client):
    assert "비밀번호" in client.get("/accounts/login/").content.decode()
    assert "Password" in client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


@pytest.mark.django_db
def test_a_select_s_empty_choice_is_in_korean(client):
    """Django 6.1's "- Select an option -" has no Korean in Django's own catalogue: the
    reviewers' and operators' admin forms showed it in English (portal.django_strings)."""
    from tests.portal.test_review_admin import staff_user

    client.force_login(staff_user("operator@centre.kr", "portal.add_organisation", "portal.view_organisation"))
    body = client.get("/admin/portal/organisation/add/").content.decode()
    assert "- 선택하세요 -" in body and "Select an option" not in body
    english = client.get("/admin/portal/organisation/add/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "- Select an option -" in english


@pytest.mark.django_db
def test_the_admin_s_logout_page_date_filter_and_calendar_speak_korean(client):
    """Strings of Django 6.1's admin that its Korean catalogues leave empty (portal.django_strings,
    locale/ko/LC_MESSAGES/djangojs.po): the calendar of every date field, its time-zone note."""
    from tests.portal.test_review_admin import staff_user

    with translation.override("ko"):
        assert translation.gettext("Logout") == "로그아웃"
        assert translation.gettext("Filter by %(field_name)s") % {"field_name": "x"} == "x(으)로 필터"
    client.force_login(staff_user("operator@centre.kr", "portal.view_organisation"))
    index = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "<title>사이트 관리 | GPU 포털 관리</title>" in index and "GPU 포털" in index and "Django" not in index
    catalog = client.get("/admin/jsi18n/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    # The catalogue is JSON with \\u escapes: "오늘 (%(date)s)" and "%(year)s년 %(month)s %(day)s일".
    assert "\\uc624\\ub298 (%(date)s)" in catalog
    assert "%(year)s\\ub144 %(month)s %(day)s\\uc77c" in catalog


def test_every_marked_string_has_a_korean_translation(tmp_path):
    """makemessages over a copy of the sources: any new or changed string without a Korean
    translation (or marked fuzzy) fails here, naming it."""
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns(".venv", ".git", ".devdata", "node_modules", "__pycache__", "staticfiles", "*.mo")
    shutil.copytree(ROOT, copy, ignore=ignore)
    result = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ko", "--ignore", "tests", "--ignore", "scripts",
         "--no-obsolete"],
        cwd=copy, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    po = (copy / "locale/ko/LC_MESSAGES/django.po").read_text()
    fuzzy = [e for e in po.split("\n\n")[1:] if "#, fuzzy" in e]
    assert fuzzy == []
    stats = subprocess.run(
        ["msgfmt", "--check", "--statistics", "-o", "/dev/null", "-"], input=po, capture_output=True, text=True
    )
    assert stats.returncode == 0, stats.stderr
    assert "untranslated" not in stats.stderr, stats.stderr
    assert "fuzzy" not in stats.stderr, stats.stderr


HANGUL = re.compile(r"[\uac00-\ud7a3]")


def admin_models():
    """The billing models finance reads in the admin (with the invoice's inlines) and the
    organisation and membership pages."""
    from django.contrib import admin

    from billing.models import InvoiceEvent, InvoiceLine
    from portal.models import Membership, Organisation

    billing = [m for m in admin.site._registry if m._meta.app_label == "billing"]
    return [*billing, InvoiceLine, InvoiceEvent, Membership, Organisation]


def test_admin_labels_of_billing_memberships_and_organisations_are_translated_into_korean():
    """Every field label, help text and model name the admin shows for these models reads in
    Korean: an English-only verbose name (or none, Django's "supplier brn") fails here."""
    untranslated = []
    with translation.override("ko"):
        for model in admin_models():
            names = [model._meta.verbose_name, model._meta.verbose_name_plural]
            untranslated += [f"{model._meta.label} Meta: {x}" for x in names if not HANGUL.search(str(x))]
            for field in model._meta.get_fields():
                if field.auto_created or not field.concrete:
                    continue
                texts = [field.verbose_name] + ([field.help_text] if field.help_text else [])
                untranslated += [f"{model._meta.label}.{field.name}: {x}" for x in texts if not HANGUL.search(str(x))]
    assert untranslated == []


def test_invoice_events_show_the_invoices_status_labels_in_korean(db):
    from billing.models import InvoiceEvent

    with translation.override("ko"):
        event = InvoiceEvent(old_status="open", new_status="paid")
        assert (event.get_old_status_display(), event.get_new_status_display()) != ("open", "paid")
        assert HANGUL.search(event.get_new_status_display())
