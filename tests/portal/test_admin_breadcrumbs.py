"""The admin's own pages (confirmations of actions, invoice actions, "Invoice a month") show
Django's breadcrumbs, styled as on every other admin page: the same <ol class="breadcrumbs">
items as Django's list and history pages, then the page itself as the current item."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils.html import escape

from tests.allocations.test_admin_confirmations import operator_client, placed  # noqa: F401 - fixtures
from tests.billing.test_finance_admin import issued
from tests.portal.test_review_admin import staff_user

pytestmark = pytest.mark.django_db


def breadcrumbs(response) -> list[str]:
    """The breadcrumbs' items as Django's admin writes them, whitespace normalised."""
    page = response.content.decode()
    assert response.status_code == 200, (response.status_code, response.get("Location"))
    found = re.search(r'<ol class="breadcrumbs">(.*?)</ol>', page, re.S)
    assert found, re.findall(r'<[^>]*class="breadcrumbs"[^>]*>', page)
    return [re.sub(r"\s+", " ", li).strip() for li in re.findall(r"<li.*?</li>", found.group(1), re.S)]


def current(response) -> str:
    return f'<li aria-current="page">{escape(response.context["title"])}</li>'


def as_link(item: str, url: str) -> str:
    """Django's list page has its own name as the current item; below it, it is a link."""
    name = re.fullmatch(r'<li aria-current="page">(.*)</li>', item).group(1)
    return f'<li><a href="{url}">{name}</a></li>'


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_grant_action_confirmation_has_djangos_breadcrumbs(operator_client, placed, language):  # noqa: F811
    grant, _node = placed
    changelist = reverse("admin:allocations_grant_changelist")
    django = breadcrumbs(operator_client.get(changelist, HTTP_ACCEPT_LANGUAGE=language))
    page = operator_client.post(
        changelist, {"action": "suspend", "_selected_action": [grant.pk]}, HTTP_ACCEPT_LANGUAGE=language
    )
    assert breadcrumbs(page) == [*django[:2], as_link(django[2], changelist), current(page)]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_an_invoice_action_page_has_djangos_breadcrumbs(client, language):
    invoice = issued()
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice", "billing.void_invoice"))
    history = reverse("admin:billing_invoice_history", args=[invoice.pk])
    django = breadcrumbs(client.get(history, HTTP_ACCEPT_LANGUAGE=language))
    page = client.get(reverse("admin:billing_invoice_void", args=[invoice.pk]), HTTP_ACCEPT_LANGUAGE=language)
    assert breadcrumbs(page) == [*django[:4], current(page)]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_invoice_a_month_page_has_djangos_breadcrumbs(client, language):
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice", "billing.add_invoicingrun"))
    changelist = reverse("admin:billing_invoicingrun_changelist")
    django = breadcrumbs(client.get(changelist, HTTP_ACCEPT_LANGUAGE=language))
    page = client.get(reverse("admin:billing_invoicingrun_start"), HTTP_ACCEPT_LANGUAGE=language)
    assert breadcrumbs(page) == [*django[:2], as_link(django[2], changelist), current(page)]
