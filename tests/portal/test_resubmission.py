"""Submitting is idempotent per draft: the apply form posted again (Back, then submit) leads to
the application already made, with no second application and no second e-mail; a form token
of another user's application opens nothing of theirs."""

import uuid

import pytest

from portal.models import Application, OutboxMessage
from tests.factories import MembershipFactory, UserFactory
from tests.portal.test_application_views import form_data


def mails_to(email: str) -> int:
    return sum(1 for m in OutboxMessage.objects.filter(func="portal.jobs.send_email_job") if m.args[0]["to"] == [email])


def test_the_apply_form_posted_again_after_submission_makes_no_second_application(browser, call, researcher):
    page = browser.get(f"/calls/{call.pk}/apply/")
    token = page.context["form"]["client_token"].value()
    data = form_data(call, researcher, submit="1", client_token=token)
    first = browser.post(f"/calls/{call.pk}/apply/", data)
    app = Application.objects.get()
    assert first["Location"] == f"/applications/{app.pk}/"

    again = browser.post(f"/calls/{call.pk}/apply/", {**data, "title": "Changed after Back"}, follow=True)
    assert again.redirect_chain[-1][0] == f"/applications/{app.pk}/"
    assert "already submitted" in again.content.decode()
    assert Application.objects.count() == 1
    app.refresh_from_db()
    assert app.status == "submitted" and app.title == "Korean LLM"
    assert mails_to(researcher.user.email) == 1


def test_back_to_the_apply_page_leads_to_the_application_already_made(browser, call, researcher):
    token = browser.get(f"/calls/{call.pk}/apply/").context["form"]["client_token"].value()
    browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, submit="1", client_token=token))
    app = Application.objects.get()
    back = browser.get(f"/calls/{call.pk}/apply/")
    assert back.status_code == 302 and back["Location"] == f"/applications/{app.pk}/"

    another = browser.get(f"/calls/{call.pk}/apply/?new=1")
    assert another.status_code == 200
    new_token = another.context["form"]["client_token"].value()
    assert str(new_token) != str(token)
    browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, save="1", client_token=new_token))
    assert Application.objects.count() == 2


def test_a_saved_draft_submitted_from_the_restored_apply_form_is_the_same_draft(browser, call, researcher):
    token = str(uuid.uuid4())
    browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, save="1", client_token=token))
    browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, submit="1", client_token=token))
    app = Application.objects.get()
    assert app.status == "submitted"
    assert mails_to(researcher.user.email) == 1


@pytest.mark.parametrize("action", ["save", "submit"])
def test_another_user_who_knows_the_token_cannot_touch_the_draft(client, call, researcher, action):
    token = str(uuid.uuid4())
    client.force_login(researcher.user)
    client.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, save="1", client_token=token))
    draft = Application.objects.get()

    colleague = MembershipFactory(user=UserFactory(email="park@snu-demo.ac.kr"), organisation=researcher.organisation)
    client.force_login(colleague.user)
    response = client.post(
        f"/calls/{call.pk}/apply/",
        form_data(call, colleague, title="Hijacked", client_token=token, **{action: "1"}),
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert response.status_code == 200
    assert "can no longer be used" in response.content.decode()
    draft.refresh_from_db()
    assert (draft.status, draft.title, draft.principal_investigator) == ("draft", "Korean LLM", researcher.user)
    assert Application.objects.count() == 1
    assert mails_to(researcher.user.email) == 0


def test_the_restored_apply_form_cannot_overwrite_later_edits_of_its_draft(browser, call, researcher):
    token = str(uuid.uuid4())
    browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, save="1", client_token=token))
    draft = Application.objects.get()
    browser.post(
        f"/applications/{draft.pk}/edit/", form_data(call, researcher, save="1", title="Edited later", version="1")
    )
    response = browser.post(f"/calls/{call.pk}/apply/", form_data(call, researcher, submit="1", client_token=token))
    assert "was changed since you opened this form" in response.content.decode()
    draft.refresh_from_db()
    assert (draft.title, draft.status) == ("Edited later", "draft")
