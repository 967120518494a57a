"""The operators' grant list says which grant is whose and where (title, PI, organisation, node,
GPUs, status, period), and the admin shows times in Seoul time with the zone."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

from allocations.models import Grant
from tests.allocations.test_admin_confirmations import operator_client, placed  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_the_grant_list_shows_title_pi_organisation_node_gpus_status_and_period(operator_client, placed):  # noqa: F811
    grant, _node = placed
    body = operator_client.get("/admin/allocations/grant/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    expected = [
        "Protein folding at scale",
        grant.application.principal_investigator.email,
        str(grant.organisation),
        "gpu-07",
        "2× H100-80GB",
        "Provisioning",
        f"{grant.starts_on:%Y-%m-%d} – {grant.ends_on:%Y-%m-%d}",
    ]
    assert [text for text in expected if text not in body] == []


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_admin_shows_times_in_seoul_time_with_the_zone(operator_client, placed, language):  # noqa: F811
    _grant, node = placed
    body = operator_client.get(f"/admin/allocations/node/{node.pk}/change/", HTTP_ACCEPT_LANGUAGE=language)
    assert "KST" in body.content.decode()


def test_an_operator_who_may_change_grants_cannot_edit_a_grants_fields_on_its_page(operator_client, placed):  # noqa: F811
    """A grant changes through its services (approval, actions), each recorded: its page is
    read-only even for `change_grant` (the awarded GPU-hours were once an input there)."""
    grant, _node = placed
    url = reverse("admin:allocations_grant_change", args=[grant.pk])
    page = operator_client.get(url).content.decode()
    names = set(re.findall(r'<(?:input|select|textarea)[^>]*\bname="([^"]+)"', page))
    assert "gpu_hours" in {f.name for f in Grant._meta.fields}
    assert not names & {f.name for f in Grant._meta.fields}, names
    operator_client.post(url, {"gpu_hours": 999_999, "status": "active", "_save": "Save"})
    grant.refresh_from_db()
    assert grant.gpu_hours == 500


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_grants_page_is_a_view_page_without_save_buttons_while_the_list_keeps_its_actions(
    operator_client,  # noqa: F811
    placed,  # noqa: F811
    language,
):
    """Nothing on a grant's page is an input, so it offers nothing to save: Django's "View
    grant" page with a Close button; suspending, resuming and revoking stay on the list."""
    grant, _node = placed
    url = reverse("admin:allocations_grant_change", args=[grant.pk])
    page = operator_client.get(url, HTTP_ACCEPT_LANGUAGE=language).content.decode()
    with translation.override(language):  # Django's own strings (not ours to extract)
        view, change, close = (gettext(msgid) for msgid in ("View %s", "Change %s", "Close"))
        view_title, change_title = view % Grant._meta.verbose_name, change % Grant._meta.verbose_name
    assert f"<h1>{view_title}</h1>" in page, re.findall(r"<h1>.*?</h1>", page)
    assert change_title not in page
    buttons = set(re.findall(r'<input type="submit"[^>]*\bname="([^"]+)"', page))
    assert not buttons & {"_save", "_continue", "_addanother", "_saveasnew"}, buttons
    assert "deletelink" not in page
    assert close in page
    listing = operator_client.get("/admin/allocations/grant/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    offered = set(re.findall(r'<option value="([a-z_]+)"', listing))
    assert {"provision", "suspend", "resume", "revoke"} <= offered, offered
