"""Journey 3, in a real browser with TOTP: a reviewer and approver who belongs to organisation X
never sees X's applications, anywhere in the admin: not in the list, the review queue, a search
for its title, the reviews list, nor by typing its change, review, decision or attachment URL;
an application of another organisation stays in reach."""

import pytest
from django.conf import settings

from portal.models import Membership, Review
from portal.services import applications as svc
from tests.e2e.conftest import sign_in
from tests.e2e.steps import APPROVER_PERMS, staff_with_totp
from tests.factories import ApplicationFactory, MembershipFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def submitted(title: str, **kwargs):
    app = ApplicationFactory(title=title, **kwargs)
    return svc.application_submit(application=app, actor=app.principal_investigator)


def test_a_reviewer_of_organisation_x_cannot_see_xs_applications_anywhere(page):
    own = submitted("Conflicted protein folding")
    other = submitted("Independent weather model")
    reviewer, secret = staff_with_totp("reviewer@x-univ.ac.kr", *APPROVER_PERMS)
    MembershipFactory(user=reviewer, organisation=own.organisation, role=Membership.Role.MEMBER)
    # Someone without a conflict reviewed X's application: that review is not shown either.
    outsider = UserFactory(email="colleague@ministry.go.kr")
    Review.objects.create(
        application=own, reviewer=outsider, merit=5, feasibility=5, national_priority=5, resource_justification=5,
        recommendation="fund", comment="Excellent folding work",
    )  # fmt: skip

    sign_in(page, reviewer.email, settings.DEMO_PASSWORD, secret)
    for path in (
        "/admin/portal/application/",
        "/admin/portal/application/?status__in=submitted%2Cin_review",  # the review queue
        "/admin/portal/application/?q=protein",
        f"/admin/portal/application/?organisation__id__exact={own.organisation_id}",
        "/admin/portal/review/",
        "/admin/portal/review/?q=folding",
    ):
        assert page.goto(path).status == 200, path
        text = page.inner_text("body")
        assert own.title not in text, path
        assert "Excellent folding work" not in text, path
    page.goto("/admin/portal/application/")
    assert other.title in page.inner_text("#result_list")

    for suffix in ("review/", "decide/", "attachment/"):
        assert page.goto(f"/admin/portal/application/{own.pk}/{suffix}").status == 404, suffix
    # The change page of a hidden object: the admin says it does not exist, nothing of it shown.
    page.goto(f"/admin/portal/application/{own.pk}/change/")
    assert own.title not in page.inner_text("body")
    assert page.url.endswith("/admin/")  # sent back to the index
    assert page.goto(f"/admin/portal/application/{other.pk}/change/").status == 200
    assert other.title in page.inner_text("body")
    assert page.csp_violations == []
