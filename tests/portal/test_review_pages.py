"""Reviewers read the whole application where they review it; approvers see every review with
its scores and decide a submitted application in one step; only possible actions are offered."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Application, ApplicationEvent, OutboxMessage, Review
from portal.services import applications as svc
from tests.factories import ApplicationFactory, MembershipFactory, UserFactory
from tests.portal.test_application_views import PDF
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

QUEUE = "/admin/portal/application/"


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def approver(db):
    return staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")


@pytest.fixture
def submitted(db):
    app = ApplicationFactory(software="PyTorch 2.5, DeepSpeed", data_sensitivity="personal")
    colleague = MembershipFactory(organisation=app.organisation, user=UserFactory(email="team@snu.ac.kr")).user
    app = svc.application_update(
        application=app, user=app.principal_investigator, data={}, team=[colleague],
        attachment=SimpleUploadedFile("plan.pdf", PDF), expected_version=app.version,
    )  # fmt: skip
    return svc.application_submit(application=app, actor=app.principal_investigator)


def test_the_review_page_shows_the_whole_application(client, submitted):
    client.force_login(staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS))
    body = client.get(f"{QUEUE}{submitted.pk}/review/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for text in [
        submitted.abstract,
        submitted.justification,
        "PyTorch 2.5, DeepSpeed",
        "Personal data (pseudonymised)",
        "team@snu.ac.kr",
        submitted.principal_investigator.email,
        "10,000 GPU-hours",
        "Eligibility",
        "Organisation history",
        f"{QUEUE}{submitted.pk}/attachment/",
    ]:
        assert text in body, text
    assert submitted.attachment.name not in body


def test_the_decide_page_shows_every_review_with_scores_and_averages(client, submitted, approver):
    for email, scores in [("r1@ministry.go.kr", (5, 4, 3, 2)), ("r2@ministry.go.kr", (4, 4, 4, 4))]:
        svc.review_save(
            application=submitted, reviewer=staff_user(email, *REVIEWER_PERMS),
            merit=scores[0], feasibility=scores[1], national_priority=scores[2], resource_justification=scores[3],
            recommendation=Review.Recommendation.APPROVE, comment=f"Comment by {email}",
        )  # fmt: skip
    client.force_login(approver)
    body = client.get(f"{QUEUE}{submitted.pk}/decide/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Comment by r1@ministry.go.kr" in body and "Comment by r2@ministry.go.kr" in body
    assert "r1@ministry.go.kr" in body
    for average in ["4.5", "4.0", "3.5", "3.0"]:
        assert f"<th>{average}</th>" in body, average


def test_an_approver_approves_a_submitted_application_in_one_step(client, submitted, approver):
    OutboxMessage.objects.all().delete()
    client.force_login(approver)
    assert "/decide/" in client.get(f"{QUEUE}{submitted.pk}/change/").content.decode()
    response = client.post(
        f"{QUEUE}{submitted.pk}/decide/",
        {"action": "approve", "gpu_model": "H100-80GB", "gpu_count": "8", "gpu_hours": "10000",
         "starts_on": submitted.starts_on.isoformat(), "ends_on": submitted.ends_on.isoformat()},
    )  # fmt: skip
    assert response.status_code == 302
    submitted.refresh_from_db()
    assert submitted.status == "approved"
    steps = list(ApplicationEvent.objects.filter(application=submitted).values_list("new_status", flat=True))
    assert steps[-2:] == ["in_review", "approved"]
    assert OutboxMessage.objects.filter(func="portal.jobs.send_email_job").count() == 1  # one mail: the decision


@pytest.mark.parametrize("action", ["return", "reject"])
def test_an_approver_returns_or_rejects_a_submitted_application_in_one_step(client, submitted, approver, action):
    client.force_login(approver)
    response = client.post(f"{QUEUE}{submitted.pk}/decide/", {"action": action, "reason": "Add a data plan."})
    assert response.status_code == 302
    submitted.refresh_from_db()
    assert submitted.status == {"return": "returned", "reject": "rejected"}[action]


def test_a_failed_one_step_approval_leaves_the_application_submitted(client, submitted, approver):
    client.force_login(approver)
    response = client.post(
        f"{QUEUE}{submitted.pk}/decide/",
        {"action": "approve", "gpu_model": "H100-80GB", "gpu_count": "8", "gpu_hours": "999999",
         "starts_on": submitted.starts_on.isoformat(), "ends_on": submitted.ends_on.isoformat()},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert response.status_code == 200
    assert Application.objects.get(pk=submitted.pk).status == "submitted"


def test_a_decided_application_offers_no_review_or_decision_form(client, submitted, approver):
    svc.application_reject(application=submitted, actor=approver, reason="Out of scope.")
    client.force_login(approver)
    change = client.get(f"{QUEUE}{submitted.pk}/change/").content.decode()
    assert f"{submitted.pk}/decide/" not in change and f"{submitted.pk}/review/" not in change
    for page in ["decide", "review"]:
        response = client.get(f"{QUEUE}{submitted.pk}/{page}/")
        assert response.status_code == 302
        assert response["Location"] == f"{QUEUE}{submitted.pk}/change/"
