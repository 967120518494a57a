from django.utils import timezone

from portal.services import applications as svc
from tests.factories import ApplicationFactory, CallFactory, UserFactory


def test_open_and_upcoming_calls_show_their_rules_and_remaining_budget(client, db):
    call = CallFactory(title_en="Academic 2027", copay_percent=10)
    CallFactory(title_en="Next round", opens_at=timezone.now() + timezone.timedelta(days=5))
    CallFactory(
        title_en="Old round",
        opens_at=timezone.now() - timezone.timedelta(days=60),
        closes_at=timezone.now() - timezone.timedelta(days=30),
    )
    approver = UserFactory(is_staff=True)
    app = ApplicationFactory(call=call, gpu_hours=10000)
    svc.application_submit(application=app, actor=app.principal_investigator)
    svc.application_start_review(application=app, actor=approver)
    svc.application_approve(
        application=app, actor=approver, gpu_model="H100-80GB", gpu_count=8, gpu_hours=10000,
        starts_on=app.starts_on, ends_on=app.ends_on,
    )  # fmt: skip

    body = client.get("/calls/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Academic 2027" in body and "Next round" in body
    assert "Old round" not in body
    assert "90,000 of 100,000 GPU-hours left" in body
    assert "University, Research institute" in body
    assert "10%" in body
    assert f'href="/calls/{call.pk}/apply/"' in body


def test_out_of_range_numbers_in_the_call_admin_are_form_errors(client, db):
    from django.utils import timezone

    from tests.portal.test_review_admin import staff_user

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


def test_applicants_see_what_happens_after_the_subsidised_hours_before_applying(client, db):
    from billing.policy import PastSubsidy

    call = CallFactory(past_subsidy=PastSubsidy.BILLABLE)
    body = client.get("/calls/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "지원 시간 소진 후" in body and "게시된 요금으로 과금되며 계속 사용" in body
    app = ApplicationFactory(call=call)
    client.force_login(app.principal_investigator)
    form = client.get(f"/calls/{call.pk}/apply/", HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert "게시된 요금으로 과금되며 계속 사용" in form


def test_the_grant_keeps_the_rule_of_its_call_at_approval_even_if_the_call_changes_later(db):
    from billing.policy import PastSubsidy
    from portal.models import Call

    call = CallFactory(past_subsidy=PastSubsidy.GRACE)
    approver = UserFactory(is_staff=True)
    app = ApplicationFactory(call=call, gpu_hours=100)
    svc.application_submit(application=app, actor=app.principal_investigator)
    svc.application_start_review(application=app, actor=approver)
    svc.application_approve(
        application=app, actor=approver, gpu_model="H100-80GB", gpu_count=1, gpu_hours=100,
        starts_on=app.starts_on, ends_on=app.ends_on,
    )  # fmt: skip
    Call.objects.filter(pk=call.pk).update(past_subsidy=PastSubsidy.SUSPEND)
    app.grant.refresh_from_db()
    assert app.grant.past_subsidy == PastSubsidy.GRACE
