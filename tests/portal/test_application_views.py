"""Applicants in the browser: drafts, submission with eligibility, timeline, withdrawal."""

import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Application, EligibilityResult, Membership
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, OrganisationDomainFactory, UserFactory

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def form_data(call, researcher, **changes):
    data = {
        "organisation": researcher.organisation_id,
        "title": "Korean LLM",
        "abstract": "Pre-training.",
        "field": "nlp",
        "gpu_model": "H100-80GB",
        "gpu_count": "8",
        "gpu_hours": "10000",
        "starts_on": call.allocation_starts_on.isoformat(),
        "ends_on": (call.allocation_starts_on + timedelta(days=60)).isoformat(),
        "justification": "Because.",
        "software": "PyTorch",
        "data_sensitivity": "public",
        "client_token": str(uuid.uuid4()),
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_a_researcher_saves_a_partial_draft_and_continues_later(browser, call, researcher):
    response = browser.post(
        f"/calls/{call.pk}/apply/",
        {
            "organisation": researcher.organisation_id,
            "title": "Half done",
            "save": "1",
            "client_token": str(uuid.uuid4()),
        },
    )
    app = Application.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/applications/{app.pk}/"
    assert app.status == "draft"
    page = browser.get(f"/applications/{app.pk}/").content.decode()
    assert "Still to fill in before submitting" in page

    edit = browser.get(f"/applications/{app.pk}/edit/")
    assert 'value="Half done"' in edit.content.decode()
    data = form_data(call, researcher, title="Now complete", version=str(app.version), save="1")
    browser.post(f"/applications/{app.pk}/edit/", data)
    app.refresh_from_db()
    assert (app.title, app.gpu_hours, app.status) == ("Now complete", 10000, "draft")


def test_submitting_an_eligible_application_runs_every_rule_and_mails_the_applicant(browser, call, researcher, jobs):
    with jobs.committed():
        response = browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, submit="1"), follow=True)
    app = Application.objects.get()
    assert app.status == "submitted"
    assert EligibilityResult.objects.filter(application=app).count() == 11
    body = response.content.decode()
    assert "was submitted" in body
    assert "Eligibility" in body
    jobs.run()
    assert mail.outbox[-1].to == ["kim@snu-demo.ac.kr"]
    assert "Submitted" in mail.outbox[-1].subject


def test_a_failing_rule_blocks_submission_and_says_what_to_fix(browser, call, researcher):
    response = browser.post(
        f"/calls/{call.pk}/apply/", form_data(call, researcher, gpu_hours="25000", submit="1"), follow=True
    )
    app = Application.objects.get()
    body = response.content.decode()
    assert app.status == "draft"  # kept, nothing lost
    assert app.gpu_hours == 25000
    assert "does not meet every rule" in body
    assert "25,000 GPU-hours is over the cap of 20,000" in body


def test_eligibility_reasons_are_shown_in_korean_to_a_korean_reader(client, call, researcher):
    client.force_login(researcher.user)
    client.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, gpu_hours="25000", submit="1"))
    app = Application.objects.get()
    body = client.get(f"/applications/{app.pk}/").content.decode()
    assert "상한" in body


def test_the_same_form_posted_twice_makes_one_application(browser, call, researcher):
    data = form_data(call, researcher, save="1")
    browser.post(f"/calls/{call.pk}/apply/", data)
    browser.post(f"/calls/{call.pk}/apply/", data)
    assert Application.objects.count() == 1


def test_a_stale_form_cannot_overwrite_newer_changes(browser, call, researcher):
    app = ApplicationFactory(call=call, organisation=researcher.organisation, principal_investigator=researcher.user)
    stale_version = app.version
    browser.post(
        f"/applications/{app.pk}/edit/",
        form_data(call, researcher, title="First", version=str(stale_version), save="1"),
    )
    response = browser.post(
        f"/applications/{app.pk}/edit/",
        form_data(call, researcher, title="Second", version=str(stale_version), save="1"),
    )
    app.refresh_from_db()
    assert app.title == "First"
    assert "changed since you opened this form" in response.content.decode()
    assert 'value="Second"' in response.content.decode()  # what was typed is kept


def test_submitting_twice_makes_one_transition(browser, call, researcher):
    app = ApplicationFactory(call=call, organisation=researcher.organisation, principal_investigator=researcher.user)
    data = form_data(call, researcher, version=str(app.version), submit="1")
    browser.post(f"/applications/{app.pk}/edit/", data)
    browser.post(f"/applications/{app.pk}/edit/", data)
    app.refresh_from_db()
    assert app.status == "submitted"
    assert app.events.filter(new_status="submitted").count() == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpu_hours": "0"}, "at least one GPU-hour"),
        ({"gpu_hours": "-5"}, "at least one GPU-hour"),
        ({"gpu_count": "0"}, "at least one GPU"),
        ({"gpu_model": "B200-180GB"}, "Select a valid choice"),
        ({"title": "x" * 201}, "at most 200 characters"),
    ],
)
def test_bad_input_gets_a_clear_error_and_keeps_the_form(browser, call, researcher, changes, message):
    response = browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, save="1", **changes))
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert 'value="Pre-training.' in body or "Pre-training." in body
    assert not Application.objects.exists()


def test_reversed_dates_are_refused(browser, call, researcher):
    data = form_data(call, researcher, save="1", starts_on="2027-06-01", ends_on="2027-05-01")
    response = browser.post(f"/calls/{call.pk}/apply/", data)
    assert "The end must be after the start" in response.content.decode()
    assert not Application.objects.exists()


def test_a_pdf_attachment_is_kept_and_served_only_to_the_team(browser, client, call, researcher):
    data = form_data(call, researcher, save="1")
    data["attachment"] = SimpleUploadedFile("plan.pdf", PDF, content_type="application/pdf")
    browser.post(f"/calls/{call.pk}/apply/", data)
    app = Application.objects.get()
    download = browser.get(f"/applications/{app.pk}/attachment/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content).startswith(b"%PDF-")
    client.force_login(UserFactory())
    assert client.get(f"/applications/{app.pk}/attachment/").status_code == 404


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("plan.pdf", b"MZ\x90\x00 not a pdf", "must be a PDF"),
        ("plan.exe", PDF, "must be a PDF"),
        ("big.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024), "larger than 10 MB"),
    ],
)
def test_non_pdf_or_oversized_attachments_are_refused(browser, call, researcher, name, content, message):
    data = form_data(call, researcher, save="1")
    data["attachment"] = SimpleUploadedFile(name, content)
    response = browser.post(f"/calls/{call.pk}/apply/", data)
    assert message in response.content.decode()
    assert not Application.objects.exists()


def test_html_in_the_title_is_escaped(browser, call, researcher):
    browser.post(
        f"/calls/{call.pk}/apply/", form_data(call, researcher, title="<img src=x onerror=alert(1)>", save="1")
    )
    app = Application.objects.get()
    body = browser.get(f"/applications/{app.pk}/").content.decode()
    assert "<img src=x" not in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_team_members_see_the_application_and_others_get_404(client, call, researcher):
    teammate = MembershipFactory(organisation=researcher.organisation).user
    colleague = MembershipFactory(organisation=researcher.organisation).user
    app = ApplicationFactory(call=call, organisation=researcher.organisation, principal_investigator=researcher.user)
    app.team.add(teammate)
    client.force_login(teammate)
    assert client.get(f"/applications/{app.pk}/").status_code == 200
    client.force_login(colleague)  # same organisation, not on the team
    assert client.get(f"/applications/{app.pk}/").status_code == 404
    client.force_login(UserFactory())
    assert client.get(f"/applications/{app.pk}/").status_code == 404
    assert client.post(f"/applications/{app.pk}/withdraw/").status_code == 404


def test_a_team_member_from_outside_the_organisation_is_refused(browser, call, researcher):
    outsider_org_member = MembershipFactory(user=researcher.user).organisation  # researcher is in two orgs
    other = MembershipFactory(organisation=outsider_org_member).user
    response = browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, team=[str(other.pk)], save="1"))
    assert "must belong to the organisation" in response.content.decode()
    assert not Application.objects.exists()


def test_withdrawing_records_the_reason_on_the_timeline(browser, call, researcher):
    app = ApplicationFactory(call=call, organisation=researcher.organisation, principal_investigator=researcher.user)
    browser.post(f"/applications/{app.pk}/withdraw/", {"reason": "Funded elsewhere"})
    app.refresh_from_db()
    assert app.status == "withdrawn"
    body = browser.get(f"/applications/{app.pk}/").content.decode()
    assert "Funded elsewhere" in body
    assert "Withdraw the application" not in body


def test_a_user_without_an_organisation_is_asked_to_join_one(client, call, db):
    client.force_login(UserFactory())
    response = client.get(f"/calls/{call.pk}/apply/")
    assert response.status_code == 302
    assert response["Location"] == "/organisations/"


def test_closed_calls_cannot_be_applied_to(browser, researcher):
    from django.utils import timezone

    closed = CallFactory(
        closes_at=timezone.now() - timezone.timedelta(days=1), opens_at=timezone.now() - timezone.timedelta(days=9)
    )
    assert browser.get(f"/calls/{closed.pk}/apply/").status_code == 404


def test_team_members_read_but_cannot_edit_or_withdraw(client, call, researcher):
    teammate = MembershipFactory(organisation=researcher.organisation).user
    app = ApplicationFactory(call=call, organisation=researcher.organisation, principal_investigator=researcher.user)
    app.team.add(teammate)
    client.force_login(teammate)
    page = client.get(f"/applications/{app.pk}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Korean foundation model" in page
    assert "Withdraw the application" not in page and f"/applications/{app.pk}/edit/" not in page
    assert client.get(f"/applications/{app.pk}/edit/").status_code == 403
    assert client.post(f"/applications/{app.pk}/withdraw/").status_code == 403
    app.refresh_from_db()
    assert app.status == "draft"


def test_a_request_announcing_a_body_far_beyond_10_mb_is_refused_before_it_is_read(browser, call, researcher):
    data = form_data(call, researcher, save="1")
    data["attachment"] = SimpleUploadedFile("huge.pdf", b"%PDF-" + b"0" * (13 * 1024 * 1024))
    response = browser.post(f"/calls/{call.pk}/apply/", data)
    assert response.status_code == 413
    assert "at most 10 MB" in response.content.decode()
    assert not Application.objects.exists()


def test_an_upload_streamed_past_the_limit_is_aborted_whatever_length_it_announced(settings):
    """A body sent without a length (or lying about it) is counted as it arrives: the handler
    stops it before it reaches memory or a temporary file."""
    from django.core.exceptions import RequestDataTooBig

    from portal.uploads import SizeLimitedUploadHandler, max_request_bytes

    handler = SizeLimitedUploadHandler()
    handler.handle_raw_input(None, {}, 0, b"x")
    chunk = b"0" * (1024 * 1024)
    received = 0
    with pytest.raises(RequestDataTooBig):
        for _ in range(100):
            handler.receive_data_chunk(chunk, received)
            received += len(chunk)
    assert received <= max_request_bytes()


def post_apply(client, call, org, **overrides):
    data = {
        "organisation": org.pk, "title": "T", "abstract": "A", "field": "nlp", "gpu_model": "H100-80GB",
        "gpu_count": 1, "gpu_hours": 100, "starts_on": call.allocation_starts_on.isoformat(),
        "ends_on": call.allocation_ends_on.isoformat(), "justification": "J", "data_sensitivity": "public",
        "client_token": str(uuid.uuid4()),
    }  # fmt: skip
    data.update(overrides)
    return client.post(f"/calls/{call.pk}/apply/", data)


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpu_hours": 2**31},
        {"gpu_count": 2**15},
        {"gpu_hours": -1},
        {"starts_on": "9999-12-31", "ends_on": "0001-01-01"},
        {"starts_on": "2027-05-01", "ends_on": "2027-04-01"},
        {"gpu_model": "A100-40GB"},
        {"client_token": "not-a-uuid"},
    ],
)
def test_bad_numbers_and_dates_in_the_apply_form_are_form_errors(client, db, overrides):
    call = CallFactory()
    member = MembershipFactory()
    client.force_login(member.user)
    response = post_apply(client, call, member.organisation, **overrides)
    assert response.status_code == 200  # the form again, with its errors
    assert not Application.objects.exists()


def test_another_users_client_token_reaches_nothing(client, db):
    victim_app = ApplicationFactory()
    mallory = MembershipFactory().user
    client.force_login(mallory)
    call = victim_app.call
    other_org = Membership.objects.get(user=mallory).organisation
    response = post_apply(client, call, other_org, client_token=str(victim_app.client_token), submit="1")
    assert response.status_code == 200
    victim_app.refresh_from_db()
    assert victim_app.status == "draft" and victim_app.title != "T"
    assert not Application.objects.filter(principal_investigator=mallory).exists()


def test_a_non_pdf_or_disguised_upload_is_refused(client, db):
    call = CallFactory()
    member = MembershipFactory()
    client.force_login(member.user)
    for name, body in [("x.pdf", b"<html><script>alert(1)</script>"), ("../../etc/x.html", b"%PDF-1.4")]:
        upload = SimpleUploadedFile(name, body, content_type="application/pdf")
        response = post_apply(client, call, member.organisation, attachment=upload)
        assert response.status_code == 200
    assert not Application.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("run", range(3))
def test_two_simultaneous_submits_of_one_form_make_one_application_and_one_mail(run):
    import threading

    from django.db import connection
    from django.test import Client

    from portal.models import OutboxMessage

    domain = OrganisationDomainFactory(domain=f"race{run}.ac.kr")
    researcher = MembershipFactory(user=UserFactory(email=f"kim@race{run}.ac.kr"), organisation=domain.organisation)
    call = CallFactory()
    data = form_data(call, researcher, submit="1")
    barrier = threading.Barrier(2)
    statuses: list = []

    def post() -> None:
        client = Client(raise_request_exception=False)
        client.force_login(researcher.user)
        barrier.wait()
        statuses.append(client.post(f"/calls/{call.pk}/apply/", data).status_code)
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [302, 302], statuses
    assert Application.objects.count() == 1
    assert Application.objects.get().status == "submitted"
    mails = OutboxMessage.objects.filter(func__contains="mail").count()
    assert mails == 1, mails
