import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.apps import apps
from django.core.management import call_command

from portal.models import Application, Call, Membership, Organisation, User


def counts() -> dict[str, int]:
    return {
        m._meta.label: m.objects.count()
        for m in apps.get_models()
        if m._meta.app_label in {"portal", "allocations", "billing", "auth", "account", "mfa"}
    }


@pytest.mark.django_db
def test_seed_demo_builds_the_demo_world_and_a_second_run_changes_nothing(capsys):
    call_command("seed_demo")
    first_out = capsys.readouterr().out
    first = counts()
    call_command("seed_demo")
    second_out = capsys.readouterr().out

    assert counts() == first
    assert first_out == second_out  # same logins, same TOTP secrets

    kinds = set(Organisation.objects.values_list("kind", flat=True))
    assert kinds == {k for k, _ in Organisation.Kind.choices}
    researcher = User.objects.get(email="researcher@demo-univ.ac.kr")
    assert researcher.check_password("portal-demo-2026")
    assert EmailAddress.objects.get(user=researcher).verified
    assert Membership.objects.get(user=researcher).organisation.name_en == "Demo National University"
    staff = User.objects.filter(is_staff=True)
    assert staff.count() == 5
    assert Authenticator.objects.filter(user__in=staff, type="totp").count() == 5
    assert User.objects.get(email="reviewer@demo-ministry.go.kr").groups.filter(name="reviewers").exists()
    assert User.objects.get(email="approver@demo-ministry.go.kr").groups.filter(name="approvers").exists()
    assert Call.objects.open().count() == 2
    assert Application.objects.get().status == "submitted"  # something in the review queue
    assert "portal-demo-2026" in first_out
    assert "TOTP secret" in first_out


@pytest.mark.django_db
def test_seed_demo_refuses_production(settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError):
        call_command("seed_demo")


@pytest.mark.django_db
def test_demo_totp_prints_the_code_the_approvers_sign_in_accepts(capsys):
    from allauth.mfa.totp.internal.auth import TOTP

    call_command("seed_demo")
    capsys.readouterr()
    call_command("demo_totp")
    out = capsys.readouterr().out
    code = next(line for line in out.splitlines() if "approver@demo-ministry.go.kr" in line).split()[-1]
    totp = Authenticator.objects.get(user__email="approver@demo-ministry.go.kr", type="totp")
    assert TOTP(totp).validate_code(code)
