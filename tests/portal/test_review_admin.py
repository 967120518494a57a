"""The review queue in the Django admin, as reviewers and approvers use it."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.contrib.auth.models import Group, Permission

from allocations.models import Grant
from portal.models import Application, Membership, Review
from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, OrganisationFactory, UserFactory

QUEUE = "/admin/portal/application/"


def staff_user(email: str, *perms: str):
    user = UserFactory(email=email, is_staff=True)
    TOTP.activate(user, generate_totp_secret())
    group, _ = Group.objects.get_or_create(name=email)
    for perm in perms:
        app_label, codename = perm.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    user.groups.add(group)
    return user


REVIEWER_PERMS = ("portal.view_application", "portal.view_review", "portal.add_review", "portal.view_eligibilityresult")


@pytest.fixture
def reviewer(db):
    return staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS)


@pytest.fixture
def approver(db):
    return staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")


def submit(app):
    return svc.application_submit(application=app, actor=app.principal_investigator)


def test_the_queue_lists_submitted_applications_with_filters_and_search(client, reviewer):
    call = CallFactory(title_en="Academic 2027")
    a = submit(ApplicationFactory(call=call, title="Protein folding"))
    b = submit(ApplicationFactory(call=call, title="Speech recognition", gpu_model="H100-80GB"))
    draft = ApplicationFactory(call=call, title="Unfinished draft")
    client.force_login(reviewer)
    body = client.get(QUEUE).content.decode()
    assert "Protein folding" in body and "Speech recognition" in body
    assert draft.title not in body
    assert "Protein folding" in client.get(QUEUE, {"q": "protein"}).content.decode()
    assert "Speech recognition" not in client.get(QUEUE, {"q": "protein"}).content.decode()
    filtered = client.get(
        QUEUE, {"status__exact": "submitted", "call__id__exact": call.pk, "organisation__kind__exact": "university"}
    )
    assert filtered.status_code == 200
    assert a.title in filtered.content.decode() and b.title in filtered.content.decode()
    assert client.get(QUEUE, {"o": "-9"}).status_code == 200  # ordering by submission date


def test_a_reviewer_never_sees_an_application_of_their_own_organisation(client, reviewer):
    own = submit(ApplicationFactory(title="My own lab's proposal"))
    Membership.objects.create(user=reviewer, organisation=own.organisation)
    other = submit(ApplicationFactory(title="Someone else's proposal"))
    client.force_login(reviewer)
    body = client.get(QUEUE).content.decode()
    assert "My own lab" not in body
    assert "Someone else" in body
    assert client.get(f"{QUEUE}{own.pk}/change/").status_code == 302  # "does not exist" redirect
    assert client.get(f"{QUEUE}{own.pk}/review/").status_code == 404
    assert client.get(f"{QUEUE}{other.pk}/review/").status_code == 200


def test_the_application_page_shows_eligibility_and_the_organisations_history(client, reviewer):
    org = OrganisationFactory()
    from tests.factories import OrganisationDomainFactory

    OrganisationDomainFactory(organisation=org)
    old = submit(ApplicationFactory(organisation=org, title="Last year's project"))
    Application.objects.filter(pk=old.pk).update(status="rejected")
    app = submit(ApplicationFactory(organisation=org, title="This year's project"))
    client.force_login(reviewer)
    body = client.get(f"{QUEUE}{app.pk}/change/").content.decode()
    assert "Last year&#x27;s project" in body or "Last year's project" in body
    assert "Eligibility" in body or "자격" in body
    assert "within the cap" in body or "상한" in body


def test_a_reviewer_scores_and_the_application_moves_into_review(client, reviewer):
    app = submit(ApplicationFactory())
    client.force_login(reviewer)
    response = client.post(
        f"{QUEUE}{app.pk}/review/",
        {
            "merit": "4",
            "feasibility": "5",
            "national_priority": "3",
            "resource_justification": "4",
            "recommendation": "approve",
            "comment": "Good.",
        },
    )
    assert response.status_code == 302
    review = Review.objects.get()
    assert (review.reviewer, review.merit, review.national_priority) == (reviewer, 4, 3)
    app.refresh_from_db()
    assert app.status == "in_review"


def test_scores_outside_one_to_five_are_refused(client, reviewer):
    app = submit(ApplicationFactory())
    client.force_login(reviewer)
    response = client.post(
        f"{QUEUE}{app.pk}/review/",
        {
            "merit": "6",
            "feasibility": "0",
            "national_priority": "3",
            "resource_justification": "4",
            "recommendation": "approve",
        },
    )
    assert response.status_code == 200
    assert not Review.objects.exists()


def test_a_reviewer_cannot_decide(client, reviewer):
    app = svc.application_start_review(application=submit(ApplicationFactory()), actor=reviewer)
    client.force_login(reviewer)
    assert client.get(f"{QUEUE}{app.pk}/decide/").status_code == 403


def test_an_approver_approves_with_an_edited_award(client, approver):
    app = svc.application_start_review(application=submit(ApplicationFactory()), actor=approver)
    client.force_login(approver)
    page = client.get(f"{QUEUE}{app.pk}/decide/")
    assert page.status_code == 200
    response = client.post(
        f"{QUEUE}{app.pk}/decide/",
        {"action": "approve", "gpu_model": "H100-80GB", "gpu_count": "4", "gpu_hours": "5000",
         "starts_on": app.starts_on.isoformat(), "ends_on": app.ends_on.isoformat(), "reason": "Reduced."},
    )  # fmt: skip
    assert response.status_code == 302
    grant = Grant.objects.get()
    assert (grant.gpu_count, grant.gpu_hours, grant.status) == (4, 5000, "pending")
    app.refresh_from_db()
    assert app.status == "approved"


def test_an_award_over_budget_without_override_is_refused_with_the_reason(client, db):
    approver = staff_user(
        "chief@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application", "portal.override_award_limits"
    )
    call = CallFactory(budgets={"H100-80GB": 3000})
    app = svc.application_start_review(
        application=submit(ApplicationFactory(call=call, gpu_hours=2000)), actor=approver
    )
    client.force_login(approver)
    data = {"action": "approve", "gpu_model": "H100-80GB", "gpu_count": "8", "gpu_hours": "4000",
            "starts_on": app.starts_on.isoformat(), "ends_on": app.ends_on.isoformat()}  # fmt: skip
    response = client.post(f"{QUEUE}{app.pk}/decide/", data, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "override reason" in response.content.decode()
    assert not Grant.objects.exists()
    client.post(f"{QUEUE}{app.pk}/decide/", {**data, "override_reason": "National priority"})
    assert Grant.objects.get().budget_override_reason == "National priority"


def test_return_and_reject_need_a_reason_the_applicant_then_reads(client, approver):
    app = svc.application_start_review(application=submit(ApplicationFactory()), actor=approver)
    client.force_login(approver)
    response = client.post(f"{QUEUE}{app.pk}/decide/", {"action": "return", "reason": ""})
    assert response.status_code == 200
    assert Application.objects.get(pk=app.pk).status == "in_review"
    client.post(f"{QUEUE}{app.pk}/decide/", {"action": "return", "reason": "Add a data management plan."})
    assert Application.objects.get(pk=app.pk).status == "returned"
    client.force_login(app.principal_investigator)
    assert "Add a data management plan." in client.get(f"/applications/{app.pk}/").content.decode()


def test_html_in_a_title_is_escaped_in_the_admin(client, reviewer):
    app = submit(ApplicationFactory(title="<script>alert('x')</script>"))
    client.force_login(reviewer)
    for url in (QUEUE, f"{QUEUE}{app.pk}/change/", f"{QUEUE}{app.pk}/review/"):
        body = client.get(url).content.decode()
        assert "<script>alert(" not in body, url


def test_an_approver_starts_the_review_from_the_application_page(client, approver):
    app = submit(ApplicationFactory())
    client.force_login(approver)
    assert "start-review" in client.get(f"{QUEUE}{app.pk}/change/").content.decode()
    client.post(f"{QUEUE}{app.pk}/start-review/")
    app.refresh_from_db()
    assert app.status == "in_review"
    assert f"{QUEUE}{app.pk}/decide/" in client.get(f"{QUEUE}{app.pk}/change/").content.decode()


def test_a_reviewer_sees_other_reviewers_scores_only_after_saving_their_own(client, db):
    """Attack review of issue 8: the review inline on the change page showed the first
    reviewer's scores and comment to the second before they wrote theirs."""
    app = ApplicationFactory()
    svc.application_submit(application=app, actor=app.principal_investigator)
    first = staff_user("first@ministry.go.kr", *REVIEWER_PERMS)
    scores = {"merit": 1, "feasibility": 1, "national_priority": 1, "resource_justification": 1}
    svc.review_save(application=app, reviewer=first, **scores, recommendation="reject", comment="UNIQUE-FIRST-COMMENT")
    second = staff_user("second@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(second)
    for url in [f"{QUEUE}{app.pk}/change/", f"{QUEUE}{app.pk}/review/"]:
        assert "UNIQUE-FIRST-COMMENT" not in client.get(url).content.decode(), url
    queue = client.get(QUEUE, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert app.title in queue and "average total score" not in queue  # nor the others' average

    svc.review_save(application=app, reviewer=second, **scores, recommendation="reject", comment="mine")
    assert "UNIQUE-FIRST-COMMENT" in client.get(f"{QUEUE}{app.pk}/change/").content.decode()
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    client.force_login(approver)
    assert "UNIQUE-FIRST-COMMENT" in client.get(f"{QUEUE}{app.pk}/change/").content.decode()


def test_the_timeline_says_seoul_time_like_the_rest_of_the_admin(client, reviewer):
    """An event at 16:10 UTC on 29 November happened at 01:10 on 30 November in Seoul."""
    from datetime import UTC, datetime

    app = submit(ApplicationFactory(title="Late-night submission"))
    app.events.update(created_at=datetime(2026, 11, 29, 16, 10, tzinfo=UTC))
    client.force_login(reviewer)
    body = client.get(f"{QUEUE}{app.pk}/change/").content.decode()
    assert "2026-11-30 01:10 KST" in body
    assert "2026-11-29 16:10" not in body
