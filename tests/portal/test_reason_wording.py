"""Eligibility reasons speak to whoever reads them: the applicant reads "Your e-mail address …"
and what to do about a failed rule on their own application page; reviewers and approvers read
"The applicant's e-mail address …", without instructions meant for the applicant, on the admin
change, review and decision pages. Reasons are stored as codes with parameters, so rows stored
before the reviewer wording existed read the reviewer wording too."""

import html

import pytest

from portal.services import applications as svc
from tests.factories import ApplicationFactory
from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user

QUEUE = "/admin/portal/application/"

# (language, the applicant's sentences, the reviewers' sentences) for the PI's verified address
# and for a stored over-the-cap row. The e-mail address is filled in by the test.
WORDING = {
    "en": (
        [
            "Your e-mail address {email} is verified.",
            "Your e-mail domain {domain} belongs to the organisation.",
            "25,000 GPU-hours is over the cap of 20,000 GPU-hours per application. Reduce the request.",
        ],
        [
            "The applicant's e-mail address {email} is verified.",
            "The applicant's e-mail domain {domain} belongs to the organisation.",
            "25,000 GPU-hours is over the cap of 20,000 GPU-hours per application.</td>",
        ],
    ),
    "ko": (
        [
            "이메일 주소 {email}이(가) 인증되었습니다.",
            "이메일 도메인 {domain}은(는) 기관의 도메인입니다.",
            "25,000 GPU 시간은 신청당 상한 20,000 GPU 시간을 넘습니다. 신청량을 줄이세요.",
        ],
        [
            "신청자의 이메일 주소 {email}이(가) 인증되었습니다.",
            "신청자의 이메일 도메인 {domain}은(는) 기관의 도메인입니다.",
            "25,000 GPU 시간은 신청당 상한 20,000 GPU 시간을 넘습니다.</td>",
        ],
    ),
}


@pytest.fixture
def submitted(db):
    """A submitted application whose latest evaluation also holds a row stored the way every row
    has been stored (a code and parameters): a failed cap, as a re-evaluation would leave it."""
    app = ApplicationFactory()
    app = svc.application_submit(application=app, actor=app.principal_investigator)
    latest = app.eligibility_results.get(rule="cap")
    latest.outcome, latest.reason_code, latest.params = "fail", "over_cap", {"hours": 25000, "cap": 20000}
    latest.save()
    return app


def sentences(submitted, language: str, reader: int) -> list[str]:
    """The reader's sentences as table cells begin (a Korean applicant sentence is the end of the
    reviewer's: "신청자의 " is what differs)."""
    email = submitted.principal_investigator.email
    domain = email.rpartition("@")[2]
    return ["<td>" + s.format(email=email, domain=domain) for s in WORDING[language][reader]]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_applicant_reads_the_eligibility_reasons_addressed_to_them(client, submitted, language):
    client.force_login(submitted.principal_investigator)
    client.cookies["django_language"] = language
    body = html.unescape(client.get(f"/applications/{submitted.pk}/").content.decode())
    for sentence in sentences(submitted, language, 0):
        assert sentence in body, sentence
    for sentence in sentences(submitted, language, 1):
        assert sentence not in body, sentence


@pytest.mark.parametrize("page", ["change", "review", "decide"])
@pytest.mark.parametrize("language", ["en", "ko"])
def test_reviewers_and_approvers_read_the_reasons_about_the_applicant(client, submitted, language, page):
    approver = staff_user("approver@ministry.go.kr", *REVIEWER_PERMS, "portal.decide_application")
    client.force_login(approver)
    response = client.get(f"{QUEUE}{submitted.pk}/{page}/", HTTP_ACCEPT_LANGUAGE=language)
    body = html.unescape(response.content.decode())
    for sentence in sentences(submitted, language, 1):
        assert sentence in body, sentence
    for sentence in sentences(submitted, language, 0):
        assert sentence not in body, sentence


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_team_member_reads_the_reasons_about_the_applicant_not_addressed_to_them(client, submitted, language):
    """ "Your e-mail address … is verified" is the principal investigator's address: a team
    member (or an owner) reading the application reads it about the applicant."""
    from portal.models import Membership
    from tests.factories import UserFactory

    member = UserFactory()
    Membership.objects.create(user=member, organisation=submitted.organisation, role=Membership.Role.MEMBER)
    submitted.team.add(member)
    client.force_login(member)
    client.cookies["django_language"] = language
    response = client.get(f"/applications/{submitted.pk}/")
    assert response.status_code == 200
    body = html.unescape(response.content.decode())
    for sentence in sentences(submitted, language, 1):
        assert sentence in body, sentence
    for sentence in sentences(submitted, language, 0):
        assert sentence not in body, sentence
