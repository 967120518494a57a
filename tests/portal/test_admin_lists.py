"""Admin lists at scale (portal/admin_scale.py) keep what Django's admin gives: a row of a
filtered list leads to the change page and back to the same filtered list, and the row
checkboxes select rows for actions."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import quote

import pytest

from benchmarks.generate import Generator
from tests.factories import ApplicationFactory
from tests.portal.test_review_admin import QUEUE, approver, reviewer, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_a_row_of_a_filtered_list_carries_the_filters_to_its_change_page(client, approver):  # noqa: F811
    app = submit(ApplicationFactory(title="Protein folding"))
    client.force_login(approver)
    body = client.get(f"{QUEUE}?status__exact=submitted", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    filters = quote("status__exact=submitted", safe="")
    assert f'href="{QUEUE}{app.pk}/change/?_changelist_filters={filters}"' in body
    assert f'name="_selected_action" value="{app.pk}" class="action-select"' in body
    assert f'href="{QUEUE}{app.pk}/change/"' in client.get(QUEUE).content.decode()  # unfiltered: a plain link


def _page(client, path: str, language: str = "ko") -> str:
    """The page's HTML without what differs on every request (CSRF token, CSP nonce)."""
    response = client.get(path, HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200, path
    body = re.sub(r'(name="csrfmiddlewaretoken" value=")[^"]+', r"\1-", response.content.decode())
    return re.sub(r'nonce="[^"]+"', 'nonce="-"', body)


def test_every_admin_list_shows_the_same_rows_as_djangos_own_result_list(db, client, settings, monkeypatch):
    """The rows written by portal/admin_rows.py (issue 13) are Django's, byte for byte: every admin
    list of the benchmark's pages on generated data (links, checkboxes, choices, dates, foreign
    keys, booleans, empty values), filtered, searched and sorted, in Korean."""
    from benchmarks.pages import pages, session_for
    from portal.models import User
    from portal.templatetags import admin_rows

    settings.ROOT_URLCONF = "benchmarks.urls"
    Generator(0.001, seed=13, nodes=None, today=date.today()).run()
    lists = [p for p in pages() if p.staff and p.path.endswith("/") and "/change/" not in p.path]
    lists += [p for p in pages() if p.name == "admin review queue"]
    queue = lists[-1]
    paths = [p.path for p in lists] + [
        f"{QUEUE}?status__exact=submitted&o=-2.6",  # filtered, sorted by two columns
        f"{QUEUE}?q=a&o=7",  # searched, sorted by the review count (annotated)
        f"{queue.path}&p=2",
    ]
    admin = User.objects.get(pk=queue.user_id)
    client.cookies[settings.SESSION_COOKIE_NAME] = session_for(admin, staff=True)
    ours = {path: _page(client, path) for path in paths}
    monkeypatch.setattr(admin_rows, "fast_rows_apply", lambda cl: False)  # Django's result_list
    djangos = {path: _page(client, path) for path in paths}
    rows = 0
    for path in paths:
        assert ours[path] == djangos[path], path
        rows += ours[path].count('class="action-select"')
    assert rows > 100  # the lists did show rows


def test_a_filtered_row_link_is_djangos_preserved_filters_link(client, approver, monkeypatch):  # noqa: F811
    """The row link's filters, encoded once per page, are what `add_preserved_filters` writes
    for each row (a filter with characters that are quoted twice)."""
    from portal.templatetags import admin_rows

    app = submit(ApplicationFactory(title="Protein & folding"))
    client.force_login(approver)
    path = f"{QUEUE}?status__in=submitted%2Cin_review&q=Protein+%26"
    ours = _page(client, path)
    assert f"{QUEUE}{app.pk}/change/?_changelist_filters=" in ours
    assert "Protein &amp; folding</a>" in ours
    monkeypatch.setattr(admin_rows, "fast_rows_apply", lambda cl: False)  # Django's result_list
    assert _page(client, path) == ours


def test_the_row_checkbox_is_djangos_with_markup_in_the_rows_name(db):
    """ScaledAdmin's checkbox is the HTML of Django's widget, the row's name escaped once."""
    from django.contrib import admin
    from django.utils import translation

    from portal.models import Application

    app = ApplicationFactory(title="""Fold <b>"proteins"</b> & 'RNA'""")
    model_admin = admin.site._registry[Application]
    for language in ("en", "ko"):
        with translation.override(language):
            assert model_admin.action_checkbox(app) == admin.ModelAdmin.action_checkbox(model_admin, app)


def test_the_application_change_page_shows_djangos_read_only_fieldsets_for_every_application_and_user(
    client,
    approver,  # noqa: F811
    reviewer,  # noqa: F811
    monkeypatch,
):
    """The read-only fieldsets written from pieces kept per shape (portal/templatetags/
    admin_readonly.py) are Django's for each application, in each language, for an approver
    (with reviews) and a reviewer (without): pieces kept for one never carry another's values."""
    from portal.templatetags import admin_readonly

    monkeypatch.setattr(admin_readonly, "_shapes", {})
    first = submit(ApplicationFactory(title="Protein <folding>", abstract="Line one\nline & two"))
    second = submit(ApplicationFactory(title="Speech recognition", abstract="Other"))
    pages = [
        (user, f"{QUEUE}{app.pk}/change/", language)
        for user in (approver, reviewer)
        for app in (first, second)
        for language in ("en", "ko")
    ]
    ours = {}
    for user, path, language in pages:
        client.force_login(user)
        ours[user.pk, path, language] = _page(client, path, language)
    assert len(admin_readonly._shapes) >= 2  # kept pieces were reused across applications
    monkeypatch.setattr(admin_readonly, "fast_fieldsets_apply", lambda adminform: False)  # Django's
    for user, path, language in pages:
        client.force_login(user)
        assert ours[user.pk, path, language] == _page(client, path, language), (user, path, language)
    assert "Protein &lt;folding&gt;" in ours[approver.pk, f"{QUEUE}{first.pk}/change/", "en"]
    assert "Speech recognition" not in ours[approver.pk, f"{QUEUE}{first.pk}/change/", "en"]
