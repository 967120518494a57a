"""Korean staff read the admin in Korean: column headers, field labels, the titles of inline
rows, the reasons the portal wrote, the e-mails to organisations and the organisation page."""

import re

import pytest
from django.contrib import admin
from django.contrib.admin.utils import label_for_field
from django.utils import timezone, translation

HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Labels that read the same in Korean.
OURS = {"portal", "billing", "allocations"}
SAME_IN_KOREAN = {"ID", "#", "GPU", "GPUs", "UUID", "SSH", "PDF", "URL"}


def shown_names(model_admin) -> list[tuple[type, str, object]]:
    """(model, field or display name, admin) of every column and field the admin declares."""
    names = []
    for name in [*model_admin.list_display, *model_admin.readonly_fields, *(model_admin.fields or [])]:
        names.append((model_admin.model, name, model_admin))
    for inline in model_admin.inlines:
        for name in [*(inline.fields or []), *inline.readonly_fields]:
            names.append((inline.model, name, inline))
    return names


def test_every_column_and_field_label_of_the_admin_reads_in_korean():
    """An annotation, a display method without a description or a field without a verbose name
    shows its English name ("CREATED AT") as the column header of a Korean admin page."""
    english = set()
    with translation.override("ko"):
        for model_admin in admin.site._registry.values():
            if model_admin.model._meta.app_label not in OURS:
                continue  # allauth's authenticators and django-rq's queues: their own catalogues
            for model, name, owner in shown_names(model_admin):
                if not isinstance(name, str) or name == "action_checkbox":
                    continue
                label = str(label_for_field(name, model, owner))
                if not HANGUL.search(label) and label not in SAME_IN_KOREAN:
                    english.add(
                        f"{type(owner).__name__ if not isinstance(owner, type) else owner.__name__}.{name}: {label}"
                    )
    assert sorted(english) == [], "\n".join(sorted(english))


def test_every_field_of_the_models_staff_read_in_the_admin_has_a_korean_label():
    """Pages that show every field read-only (a grant, a task) name each by its verbose name:
    a field without one showed "Created at" on a Korean page."""
    english = []
    with translation.override("ko"):
        models = set()
        for model_admin in admin.site._registry.values():
            if model_admin.model._meta.app_label in OURS:
                models |= {model_admin.model, *(inline.model for inline in model_admin.inlines)}
        for model in models:
            for field in model._meta.get_fields():
                if field.auto_created or not field.concrete:
                    continue
                label = str(field.verbose_name)
                if not HANGUL.search(label) and label not in SAME_IN_KOREAN:
                    english.append(f"{model.__name__}.{field.name}: {label}")
    assert sorted(english) == []


KO = {"HTTP_ACCEPT_LANGUAGE": "ko"}


@pytest.mark.django_db
def test_the_e_mails_to_organisations_show_their_kind_and_values_in_korean(client):
    """Not "subsidy_threshold" and {"percent": 80, "grace_hours": 72}."""
    from portal.models import Mailing
    from tests.factories import OrganisationFactory
    from tests.portal.test_review_admin import staff_user

    org = OrganisationFactory()
    mailing = Mailing.objects.create(
        template="subsidy_threshold", audience="billing.services.consequences.subsidy_audience", organisation=org,
        refs={"grant": ["allocations.grant", 5]}, context={"percent": 80, "grace_hours": 1440},
    )  # fmt: skip
    client.force_login(staff_user("operator@centre.kr", "portal.view_mailing"))
    listing = client.get("/admin/portal/mailing/", **KO).content.decode()
    assert "지원 시간 소진 임박" in listing and ">subsidy_threshold<" not in listing
    assert re.search(r"column-organisation[^>]*>\s*(<[^>]*>\s*)*기관<", listing) and ">Organisation<" not in listing
    page = client.get(f"/admin/portal/mailing/{mailing.pk}/change/", **KO).content.decode()
    assert "지원 과제 #5" in page and "사용한 지원 시간 비율(%): 80" in page and "유예 기간(시간): 1,440" in page
    assert "grace_hours" not in page and "allocations.grant" not in page


@pytest.mark.django_db
def test_a_university_s_page_shows_no_business_number_status(client):
    """A university has no business registration number: its page said "BRN status: 없음"."""
    from portal.models import Organisation
    from tests.factories import OrganisationFactory
    from tests.portal.test_review_admin import staff_user

    university = OrganisationFactory(kind=Organisation.Kind.UNIVERSITY)
    company = OrganisationFactory(
        kind=Organisation.Kind.STARTUP, business_registration_number="1208147521", brn_status="claimed"
    )
    client.force_login(staff_user("operator@centre.kr", "portal.view_organisation"))
    page = client.get(f"/admin/portal/organisation/{university.pk}/change/", **KO).content.decode()
    assert "field-brn_status" not in page and "field-business_registration_number" not in page
    assert "field-brn_status" in client.get(f"/admin/portal/organisation/{company.pk}/change/", **KO).content.decode()
    listing = client.get("/admin/portal/organisation/", **KO).content.decode()
    assert '<td class="field-brn_status">해당 없음</td>' in listing


@pytest.mark.django_db
def test_the_sign_in_page_says_stay_signed_in(client):
    """allauth's Korean catalogue says "아이디 저장" (save the user name); the box keeps the session."""
    body = client.get("/accounts/login/", **KO).content.decode()
    assert "로그인 상태 유지" in body and "아이디 저장" not in body


def test_draining_has_one_korean_term_across_the_catalogue():
    from pathlib import Path

    po = (Path(__file__).resolve().parents[2] / "locale/ko/LC_MESSAGES/django.po").read_text()
    entries = [e for e in po.split("\n\n") if re.search(r'^msgid ".*[Dd]rain', e, re.M)]
    assert len(entries) >= 5
    assert [e for e in entries if "드레인" not in e.split("msgstr")[1]] == []
    assert "비우는" not in po and "배정 중단(" not in po


def test_titles_of_rows_staff_read_are_korean():
    """The titles of inline rows and of objects named in the admin's messages."""
    from allocations.models import AccessInterval, GrantEvent, JupyterSession, Node, NodeAccount, NodeOperation
    from portal.models import CallBudget

    node = Node(pk=3, hostname="gpu1.centre.kr")
    with translation.override("ko"):
        titles = [
            str(GrantEvent(grant_id=7, old_status="provisioning", new_status="active")),
            str(JupyterSession(grant_id=7, account=NodeAccount(username="u1001", node=node))),
            str(
                NodeOperation(node_id=3, kind=NodeOperation.Kind.choices[0][0], state=NodeOperation.State.choices[0][0])
            ),
            str(CallBudget(gpu_model_id="H100-80GB", gpu_hours=12000)),
        ]
        interval = AccessInterval(grant_id=7, opened_at=timezone.now(), closed_at=None)
        titles.append(str(interval))
    assert all(HANGUL.search(t) for t in titles), titles
    assert "12,000" in titles[3]


@pytest.mark.django_db
def test_the_reviewers_page_and_the_call_list_group_gpu_hours(client):
    """Not "12000": the request's GPU-hours on the application page, a call's cap in the list."""
    from tests.factories import ApplicationFactory, CallFactory
    from tests.portal.test_review_admin import REVIEWER_PERMS, staff_user, submit

    call = CallFactory(cap_gpu_hours=20000)
    application = submit(ApplicationFactory(call=call, gpu_hours=12000))
    client.force_login(staff_user("reviewer@ministry.go.kr", *REVIEWER_PERMS, "portal.view_call"))
    page = client.get(f"/admin/portal/application/{application.pk}/change/", **KO).content.decode()
    assert '<div class="readonly">12,000</div>' in page
    review = client.get(f"/admin/portal/application/{application.pk}/review/", **KO).content.decode()
    assert "12,000 GPU 시간" in review and "GPU-hours" not in review
    assert (
        '<td class="field-cap_gpu_hours_shown">20,000</td>' in client.get("/admin/portal/call/", **KO).content.decode()
    )


def test_reasons_the_portal_wrote_on_grants_and_node_accounts_read_in_korean():
    from allocations.models import Grant, NodeAccountEvent

    with translation.override("ko"):
        assert NodeAccountEvent(reason="account created").reason_text == "계정 생성됨"
        assert Grant(status_reason="placed on gpu1.centre.kr").status_reason_text == "gpu1.centre.kr에 배치됨"
        reserved = Grant(status_reason="GPUs reserved on gpu1; access opens on 2027-01-01.").status_reason_text
        assert reserved == "gpu1에 GPU 예약됨. 2027-01-01에 접속이 열립니다."
        assert (
            Grant(status_reason="uid 1001 already belongs to x").status_reason_text == "uid 1001 already belongs to x"
        )
