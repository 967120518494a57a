"""Numbers the database can hold, and awards that stay inside what the call offers."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from allocations.models import Grant
from portal.errors import PortalError
from portal.models import Application, Call
from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, award_of
from tests.portal.test_review_admin import QUEUE, REVIEWER_PERMS, staff_user

HUGE = 2**31


@pytest.fixture
def approver(db):
    return staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")


def in_review(approver, **kwargs) -> Application:
    app = ApplicationFactory(**kwargs)
    svc.application_submit(application=app, actor=app.principal_investigator)
    return svc.application_start_review(application=app, actor=approver)


def approve_data(app, **changes) -> dict:
    data = {"action": "approve", "gpu_model": "H100-80GB", "gpu_count": "4", "gpu_hours": "5000",
            "starts_on": app.starts_on.isoformat(), "ends_on": app.ends_on.isoformat()}  # fmt: skip
    data.update(changes)
    return data


def test_an_award_of_two_to_the_31_gpu_hours_is_a_form_error_not_a_500(client, approver):
    app = in_review(approver)
    client.force_login(approver)
    response = client.post(
        f"{QUEUE}{app.pk}/decide/", approve_data(app, gpu_hours=str(HUGE)), HTTP_ACCEPT_LANGUAGE="en"
    )
    assert response.status_code == 200
    assert "less than or equal to" in response.content.decode()
    response = client.post(f"{QUEUE}{app.pk}/decide/", approve_data(app, gpu_count="40000"), HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert not Grant.objects.exists()


def test_the_service_refuses_out_of_bounds_awards_too(approver):
    app = in_review(approver)
    with pytest.raises(PortalError) as exc:
        svc.application_approve(application=app, actor=approver, **award_of(app, gpu_hours=HUGE))
    assert exc.value.code == "out_of_bounds"


def test_an_application_asking_for_two_to_the_31_hours_gets_a_form_error(user_client, user):
    from tests.factories import MembershipFactory

    call = CallFactory()
    MembershipFactory(user=user)
    response = user_client.post(
        f"/calls/{call.pk}/apply/",
        {"organisation": user.memberships.get().organisation_id, "gpu_hours": str(HUGE), "gpu_count": "70000"},
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert "less than or equal to" in response.content.decode()
    assert not Application.objects.exists()


def test_a_call_with_a_cap_beyond_the_bounds_is_a_form_error_in_the_admin(client, db):
    from tests.factories import UserFactory

    admin = UserFactory(is_staff=True, is_superuser=True)
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    TOTP.activate(admin, generate_totp_secret())
    client.force_login(admin)
    response = client.post(
        "/admin/portal/call/add/",
        {"title_ko": "공모", "title_en": "Call", "opens_at_0": "2027-01-01", "opens_at_1": "00:00",
         "closes_at_0": "2027-02-01", "closes_at_1": "00:00", "eligible_kinds": "university",
         "cap_gpu_hours": str(HUGE), "copay_percent": "0", "allocation_starts_on": "2027-03-01",
         "allocation_ends_on": "2027-12-01", "max_startup_age_years": "40000",
         "budgets-TOTAL_FORMS": "1", "budgets-INITIAL_FORMS": "0", "budgets-0-gpu_model": "H100-80GB",
         "budgets-0-gpu_hours": str(HUGE)},
        HTTP_ACCEPT_LANGUAGE="en",
    )  # fmt: skip
    assert response.status_code == 200
    assert response.content.decode().count("less than or equal to") >= 3
    assert not Call.objects.exists()


def test_the_database_refuses_out_of_bounds_numbers_whatever_the_code_does(db):
    app = ApplicationFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Application.objects.filter(pk=app.pk).update(gpu_hours=200_000_000)
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.filter(pk=app.call_id).update(cap_gpu_hours=0)


def test_the_award_offers_only_the_calls_gpu_models(client, approver):
    app = in_review(approver, call=CallFactory(budgets={"H100-80GB": 100000}))
    client.force_login(approver)
    page = client.get(f"{QUEUE}{app.pk}/decide/").content.decode()
    assert 'value="H100-80GB"' in page
    assert 'value="A100-80GB"' not in page and 'value="B200-180GB"' not in page
    response = client.post(f"{QUEUE}{app.pk}/decide/", approve_data(app, gpu_model="A100-80GB"))
    assert response.status_code == 200
    assert not Grant.objects.exists()


def test_dates_outside_the_allocation_window_need_the_approvers_confirmation(client, approver):
    app = in_review(approver)
    early = app.call.allocation_starts_on - timedelta(days=5)
    client.force_login(approver)
    data = approve_data(app, starts_on=early.isoformat())
    response = client.post(f"{QUEUE}{app.pk}/decide/", data, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200
    assert "outside the call&#x27;s allocation window" in response.content.decode()
    assert not Grant.objects.exists()
    with pytest.raises(PortalError) as exc:
        svc.application_approve(application=app, actor=approver, **award_of(app, starts_on=early))
    assert exc.value.code == "outside_window"
    response = client.post(f"{QUEUE}{app.pk}/decide/", {**data, "confirm_outside_window": "on"})
    assert response.status_code == 302
    assert Grant.objects.get().starts_on == early
