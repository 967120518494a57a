"""The operators' grant list says which grant is whose and where (title, PI, organisation, node,
GPUs, status, period), and the admin shows times in Seoul time with the zone."""

from __future__ import annotations

import pytest

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
