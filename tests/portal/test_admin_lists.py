"""Admin lists at scale (portal/admin_scale.py) keep what Django's admin gives: a row of a
filtered list leads to the change page and back to the same filtered list, and the row
checkboxes select rows for actions."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.factories import ApplicationFactory
from tests.portal.test_review_admin import QUEUE, approver, submit  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def test_a_row_of_a_filtered_list_carries_the_filters_to_its_change_page(client, approver):  # noqa: F811
    app = submit(ApplicationFactory(title="Protein folding"))
    client.force_login(approver)
    body = client.get(f"{QUEUE}?status__exact=submitted", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    filters = quote("status__exact=submitted", safe="")
    assert f'href="{QUEUE}{app.pk}/change/?_changelist_filters={filters}"' in body
    assert f'name="_selected_action" value="{app.pk}" class="action-select"' in body
    assert f'href="{QUEUE}{app.pk}/change/"' in client.get(QUEUE).content.decode()  # unfiltered: a plain link
