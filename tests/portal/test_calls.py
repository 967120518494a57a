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
