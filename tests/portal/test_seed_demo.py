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
    assert Application.objects.filter(status="submitted").count() == 1  # something in the review queue
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


@pytest.mark.django_db
def test_the_demo_startup_has_its_previous_two_months_invoiced_once_and_its_founder_reads_them(client, capsys):
    from billing.models import Invoice, InvoicingRun
    from portal.management.demo_billing import demo_invoiced_months

    call_command("seed_demo")
    call_command("seed_demo")  # a second `make run`: no second invoice, run or transfer
    founder = User.objects.get(email="founder@demo-startup.kr")
    invoices = list(Invoice.objects.filter(organisation__memberships__user=founder).order_by("month"))
    assert [x.month for x in invoices] == demo_invoiced_months()
    assert [x.status for x in invoices] == ["paid", "open"]  # the older one paid by a recorded transfer
    assert all(x.total_krw > 0 and x.number.startswith("INV-") for x in invoices)
    assert InvoicingRun.objects.count() == 2
    client.force_login(founder)
    page = client.get("/billing/invoices/").content.decode()
    assert invoices[1].number in page and invoices[0].number in page
    pdf = client.get(f"/billing/invoices/{invoices[1].pk}/pdf/")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")


@pytest.mark.django_db
def test_a_make_run_after_the_demo_invoice_fell_due_pays_it_so_the_startup_can_still_apply():
    """The demo has no card payment configured: an open demo invoice past its due date would
    leave the startup overdue (new applications blocked) with no way to pay."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import Invoice
    from billing.services.invoices import organisation_has_overdue_invoice

    call_command("seed_demo")
    newest = Invoice.objects.order_by("month").last()
    Invoice.objects.filter(pk=newest.pk).update(due_on=timezone.localdate() - timedelta(days=1))
    call_command("seed_demo")
    newest.refresh_from_db()
    assert newest.status == Invoice.Status.PAID
    assert not organisation_has_overdue_invoice(newest.organisation_id)


@pytest.mark.django_db
def test_demo_supplier_and_buyer_have_different_valid_business_numbers(settings):
    from billing.models import Invoice
    from portal.validators import brn_is_issued_and_valid

    call_command("seed_demo")
    invoice = Invoice.objects.first()
    assert invoice.supplier_brn == settings.BILLING_SUPPLIER_BRN
    assert invoice.buyer_brn != invoice.supplier_brn
    assert brn_is_issued_and_valid(invoice.buyer_brn)


@pytest.mark.django_db
def test_the_seeded_finance_user_opens_invoices_and_sees_the_actions_that_apply(client, capsys):
    from billing.models import Invoice
    from billing.services.invoices import invoice_void

    call_command("seed_demo")
    finance = User.objects.get(email="finance@demo-centre.kr")
    client.force_login(finance)
    listing = client.get("/admin/billing/invoice/")
    assert listing.status_code == 200
    paid, open_ = Invoice.objects.order_by("month")
    assert open_.number in listing.content.decode()
    assert open_.total_krw >= 1000 and f"{open_.total_krw:,}" in listing.content.decode()  # thousands separators
    page = client.get(f"/admin/billing/invoice/{open_.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{open_.pk}/void/" in page
    assert f"{open_.total_krw:,}" in page and f"{open_.supply_krw:,}" in page
    assert f"/admin/billing/invoice/{open_.pk}/transfer/" in page
    page = client.get(f"/admin/billing/invoice/{paid.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{paid.pk}/credit/" in page
    for path in ("banktransfer", "creditnote", "hourpack", "billingaccount", "stripeevent", "invoicingrun"):
        assert client.get(f"/admin/billing/{path}/").status_code == 200, path
    assert client.get("/admin/billing/invoicingrun/start/").status_code == 200  # "Invoice a month"
    assert client.get("/admin/portal/mailing/").status_code == 200  # did the invoice e-mails go out?
    invoice_void(invoice_id=open_.pk, actor=finance, reason="demo")
    page = client.get(f"/admin/billing/invoice/{open_.pk}/change/").content.decode()
    assert f"/admin/billing/invoice/{open_.pk}/reissue/" in page


@pytest.mark.django_db
def test_operators_see_memberships_and_the_audit_log_but_reviewers_do_not(client, capsys):
    call_command("seed_demo")
    for email, allowed in [("operator@demo-centre.kr", 200), ("reviewer@demo-ministry.go.kr", 403)]:
        client.force_login(User.objects.get(email=email))
        assert client.get("/admin/portal/membership/").status_code == allowed, email
        assert client.get("/admin/portal/organisationauditlog/").status_code == allowed, email


@pytest.mark.django_db
def test_the_demo_operator_verifies_domains_and_keeps_the_institutional_list(client, capsys):
    call_command("seed_demo")
    client.force_login(User.objects.get(email="operator@demo-centre.kr"))
    for path in ("organisationdomain", "institutionaldomain", "mailing"):
        assert client.get(f"/admin/portal/{path}/").status_code == 200, path
    assert client.get("/admin/portal/institutionaldomain/add/").status_code == 200
    assert "verify_domains" in client.get("/admin/portal/organisationdomain/").content.decode()


@pytest.mark.django_db
def test_the_demo_pilot_grant_s_usage_hours_count_what_its_invoices_bill(client, capsys):
    """The founder's dashboard: "GPU-hours used" (usage hours) and the subsidised hours used
    (access intervals, what is billed) are the same 432 hours of the ended pilot."""
    from allocations.models import Grant

    call_command("seed_demo")
    pilot = Grant.objects.get(application__title="Korean speech model fine-tuning (pilot)")
    billed = sum((i.closed_at - i.opened_at).total_seconds() / 60 * i.gpu_count for i in pilot.access_intervals.all())
    assert sum(pilot.usage_hours.values_list("gpu_minutes", flat=True)) == billed == 432 * 60
    client.force_login(pilot.application.principal_investigator)
    page = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "432.0 / 500 (86.4%)" in page  # the grants table, from usage hours


@pytest.mark.django_db
def test_every_totp_command_the_demo_suggests_runs_here_and_prints_a_valid_code_for_each_staff_user(capsys):
    """The start-up output suggested `oathtool`, which this machine does not have (nor does
    scripts/bootstrap.sh install it): each command it names must work with what is installed."""
    import shlex
    import shutil

    from allauth.mfa.totp.internal.auth import TOTP

    call_command("seed_demo")
    hint = next(line for line in capsys.readouterr().out.splitlines() if "demo_totp" in line)
    commands = hint.split("`")[1::2]
    assert commands
    for command in commands:
        words = shlex.split(command)
        if words[:2] != ["make", "manage"]:
            assert shutil.which(words[0]), f"{words[0]} is not installed: {hint}"
            continue
        assert shutil.which("make")
        args = shlex.split(next(w for w in words if w.startswith("ARGS=")).removeprefix("ARGS="))
        call_command(*args)
        printed = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines() if "@" in line)
        staff = Authenticator.objects.filter(user__is_staff=True, type="totp").select_related("user")
        assert len(staff) == 5
        for totp in staff:
            assert TOTP(totp).validate_code(printed[totp.user.email]), totp.user.email


@pytest.mark.django_db
def test_the_demo_operator_reads_metering_and_the_outbox_and_marks_notices_resolved(client, capsys):
    """docs/operations.md, "Metering": operators find notices in the admin and mark them
    resolved; usage hours, sample batches and the outbox's backlog are theirs to read."""
    from allocations.models import Notice

    call_command("seed_demo")
    notice = Notice.objects.create(kind=Notice.Kind.SILENT_NODE, key="silent:demo-test", details={})
    client.force_login(User.objects.get(email="operator@demo-centre.kr"))
    for path in ("allocations/notice", "allocations/usagehour", "allocations/samplebatch", "portal/outboxmessage"):
        assert client.get(f"/admin/{path}/").status_code == 200, path
    assert 'value="resolve"' in client.get("/admin/allocations/notice/").content.decode()
    client.post("/admin/allocations/notice/", {"action": "resolve", "_selected_action": [notice.pk]})
    notice.refresh_from_db()
    assert notice.resolved_at is not None


@pytest.mark.django_db
def test_a_notice_is_marked_resolved_only_by_staff_who_may_change_notices(client):
    """Reading notices is not enough to resolve one: the action needs *change notice*."""
    from allocations.models import Notice
    from tests.portal.test_review_admin import staff_user

    notice = Notice.objects.create(kind=Notice.Kind.SILENT_NODE, key="silent:viewer-test", details={})
    client.force_login(staff_user("viewer@centre.kr", "allocations.view_notice"))
    assert 'value="resolve"' not in client.get("/admin/allocations/notice/").content.decode()
    client.post("/admin/allocations/notice/", {"action": "resolve", "_selected_action": [notice.pk]})
    notice.refresh_from_db()
    assert notice.resolved_at is None
