"""Attack review of issue 8 (attack8): probes that HELD on the reviewed commit, kept as
regression tests."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.models import Application, Membership
from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, UserFactory
from tests.portal.test_review_admin import QUEUE, REVIEWER_PERMS, staff_user


def _post_apply(client, call, org, **overrides):
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
    response = _post_apply(client, call, member.organisation, **overrides)
    assert response.status_code == 200  # the form again, with its errors
    assert not Application.objects.exists()


def test_another_users_client_token_reaches_nothing(client, db):
    victim_app = ApplicationFactory()
    mallory = MembershipFactory().user
    client.force_login(mallory)
    call = victim_app.call
    other_org = Membership.objects.get(user=mallory).organisation
    response = _post_apply(client, call, other_org, client_token=str(victim_app.client_token), submit="1")
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
        response = _post_apply(client, call, member.organisation, attachment=upload)
        assert response.status_code == 200
    assert not Application.objects.exists()


@pytest.fixture
def conflicted(db):
    """An approver who once was a member of the applying organisation and left."""
    app = ApplicationFactory()
    app.attachment.save("plan.pdf", ContentFile(b"%PDF-1.4 plan"), save=True)
    svc.application_submit(application=app, actor=app.principal_investigator)
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    from portal.services import membership_remove

    m = MembershipFactory(user=approver, organisation=app.organisation)
    membership_remove(membership=m, actor=approver)
    return app, approver


@pytest.mark.parametrize(
    "suffix",
    ["{pk}/change/", "{pk}/review/", "{pk}/decide/", "{pk}/attachment/", "{pk}/history/", "{pk}/start-review/"],
)
def test_a_conflicted_approver_gets_404_on_every_admin_page_of_the_application(client, conflicted, suffix):
    app, approver = conflicted
    client.force_login(approver)
    url = QUEUE + suffix.format(pk=app.pk)
    assert client.get(url).status_code in (302, 404)
    if suffix == "{pk}/start-review/":
        client.post(url)
        app.refresh_from_db()
        assert app.status == "submitted"


@pytest.mark.parametrize(
    "params",
    [
        {"q": "Korean foundation"},
        {"organisation__memberships__user": "{uid}"},
        {"organisation__created_by": "{uid}"},
        {"principal_investigator__email__startswith": "pi"},
        {"status__exact": "submitted"},
    ],
)
def test_the_queue_never_lists_or_probes_a_conflicted_application(client, conflicted, params):
    app, approver = conflicted
    client.force_login(approver)
    response = client.get(QUEUE, {k: v.format(uid=approver.pk) for k, v in params.items()})
    assert response.status_code in (200, 400)
    assert app.title not in response.content.decode()


def test_a_conflicted_reviewer_cannot_act_through_the_bulk_action(client, conflicted):
    app, approver = conflicted
    client.force_login(approver)
    client.post(QUEUE, {"action": "start_review", "_selected_action": [app.pk], "select_across": "1"})
    app.refresh_from_db()
    assert app.status == "submitted"


def test_staff_without_this_sessions_second_factor_are_not_served_the_admin_behind_a_prefix(client, db):
    staff = staff_user("ops@ministry.go.kr", *REVIEWER_PERMS)
    client.force_login(staff, mfa=False)
    for path in ["/admin/", "/admin/portal/application/"]:
        response = client.get(path, SCRIPT_NAME="/portal")
        assert response.status_code == 302 and "reauthenticate" in response["Location"]
    response = client.get("/admin/")
    assert response.status_code == 302


def test_a_member_cannot_reach_other_users_keys_or_grants(client, db):
    from allocations.models import SshKey

    victim = UserFactory()
    key = SshKey.objects.create(
        user=victim, key_type="ssh-ed25519", public_key="ssh-ed25519 AAAA", fingerprint="SHA256:x", bits=256
    )
    client.force_login(UserFactory())
    assert client.post(f"/keys/{key.pk}/delete/").status_code == 404
    assert SshKey.objects.filter(pk=key.pk).exists()


def test_out_of_range_numbers_in_the_call_admin_are_form_errors(client, db):
    from django.utils import timezone

    admin_user = staff_user("root@ministry.go.kr")
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    client.raise_request_exception = False
    now = timezone.now()
    data = {
        "title_ko": "공모", "title_en": "Call", "opens_at_0": now.date().isoformat(), "opens_at_1": "00:00:00",
        "closes_at_0": now.date().isoformat(), "closes_at_1": "23:00:00", "eligible_kinds": "university",
        "cap_gpu_hours": str(2**31), "copay_percent": "1000", "allocation_starts_on": "2027-01-01",
        "allocation_ends_on": "2027-12-31", "max_startup_age_years": str(2**40),
        "budgets-TOTAL_FORMS": "1", "budgets-INITIAL_FORMS": "0", "budgets-MIN_NUM_FORMS": "0",
        "budgets-MAX_NUM_FORMS": "1000", "budgets-0-gpu_model": "H100-80GB", "budgets-0-gpu_hours": str(2**63),
    }  # fmt: skip
    response = client.post("/admin/portal/call/add/", data)
    assert response.status_code == 200  # the form again, with errors; not a 500
