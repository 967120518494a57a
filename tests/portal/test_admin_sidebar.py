"""The admin's navigation sidebar, rendered once per distinct content (issue 13), still follows
the user's permissions of each request and marks the page the user is on."""

from __future__ import annotations

from django.contrib.auth.models import Permission

from tests.portal.test_review_admin import QUEUE, REVIEWER_PERMS, staff_user

GRANTS = "/admin/allocations/grant/"
REVIEWS = "/admin/portal/review/"


def sidebar(client, path: str) -> str:
    body = client.get(path).content.decode()
    return body[
        body.index('<nav class="sticky" id="nav-sidebar"') : body.index("</nav>", body.index('id="nav-sidebar"'))
    ]


def test_the_sidebar_shows_a_model_from_the_request_after_the_permission_is_granted_and_not_after_it_is_taken(
    client, db
):
    reviewer = staff_user("sidebar-reviewer@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(reviewer)
    assert f'href="{GRANTS}"' not in sidebar(client, QUEUE)
    group = reviewer.groups.get()
    view_grant = Permission.objects.get(content_type__app_label="allocations", codename="view_grant")
    group.permissions.add(view_grant)
    assert f'href="{GRANTS}"' in sidebar(client, QUEUE)
    group.permissions.remove(view_grant)
    assert f'href="{GRANTS}"' not in sidebar(client, QUEUE)


def test_the_sidebar_marks_the_list_the_user_is_on(client, db):
    reviewer = staff_user("sidebar-marks@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(reviewer)
    on_queue = sidebar(client, QUEUE)
    assert 'class="model-application current-model"' in on_queue
    assert 'class="model-review current-model"' not in on_queue
    on_reviews = sidebar(client, REVIEWS)
    assert 'class="model-review current-model"' in on_reviews
    assert 'class="model-application current-model"' not in on_reviews


def test_two_users_with_different_permissions_each_get_their_own_sidebar(client, db):
    reviewer = staff_user("sidebar-one@ministry.go.kr", *REVIEWER_PERMS)
    operator = staff_user("sidebar-two@ministry.go.kr", *REVIEWER_PERMS, "allocations.view_grant")
    client.force_login(operator)
    assert f'href="{GRANTS}"' in sidebar(client, QUEUE)
    client.force_login(reviewer)
    assert f'href="{GRANTS}"' not in sidebar(client, QUEUE)
