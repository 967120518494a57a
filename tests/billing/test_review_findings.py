"""A review of the billing, SSH and demo changes: each finding reproduced (it failed on the code
as reviewed, and passes since its fix) beside checks that held (they pin the sound behaviour)."""

from __future__ import annotations

import base64
import csv
import io
from datetime import date
from types import SimpleNamespace

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from allocations import ssh

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


@pytest.fixture
def portal_key(tmp_path):
    path = tmp_path / "id_ed25519"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def target(port: int = 22) -> ssh.Target:
    return ssh.Target(address="127.0.0.1", port=port, username="gpprov", host_key=HOST_KEY, agent_path="/x")


@pytest.fixture
def connect_calls(monkeypatch):
    """paramiko's connect replaced by one raising the exception under test; counts the tries."""
    monkeypatch.setattr(ssh.time, "sleep", lambda s: None)
    calls = []

    def install(exc: BaseException, *, keys_exchanged: bool = False):
        def fake_connect(self, *args, **kwargs):
            calls.append(1)
            if keys_exchanged:  # as paramiko's transport after it checked the pinned host key
                self._transport = SimpleNamespace(host_key=object(), close=lambda: None)
            raise exc

        monkeypatch.setattr(paramiko.SSHClient, "connect", fake_connect)
        return calls

    return install


# -- SSH handshake retries: checks that hold ---------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        paramiko.AuthenticationException("refused"),
        paramiko.SSHException("Server '[127.0.0.1]:2222' not found in known_hosts"),
        paramiko.SSHException("Signature verification (ssh-ed25519) failed."),
    ],
    ids=["auth", "unknown-host-key", "bad-signature"],
)
def test_authentication_and_host_key_failures_are_tried_once_only(connect_calls, portal_key, exc):
    calls = connect_calls(exc)
    with pytest.raises(ssh.SshError):
        ssh.Connection(target(), portal_key)
    assert len(calls) == 1


def test_a_changed_host_key_is_tried_once_only(connect_calls, portal_key):
    other = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    key = paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(other.split()[1]))
    calls = connect_calls(paramiko.BadHostKeyException("127.0.0.1", key, key))
    with pytest.raises(ssh.SshError) as err:
        ssh.Connection(target(), portal_key)
    assert err.value.code == "host_key_mismatch" and err.value.permanent
    assert len(calls) == 1


# -- SSH handshake retries: findings ------------------------------------------------------------


def banner_timeout() -> paramiko.SSHException:
    """What paramiko's transport raises when the banner does not come within banner_timeout
    (transport._check_banner: `"Error reading SSH protocol banner" + str(e)`, str(timeout) == "")."""
    exc = paramiko.SSHException("Error reading SSH protocol banner" + str(TimeoutError()))
    exc.__context__ = TimeoutError()
    return exc


def test_a_node_whose_sshd_never_sends_its_banner_is_not_waited_for_four_times(connect_calls, portal_key):
    """A node that accepts TCP and hangs (sshd stuck, swapping, a half-open path) makes paramiko
    time out reading the banner, with the same message as a banner cut short by a reload:
    "Error reading SSH protocol banner". ssh.py then connects again, up to four times, each
    waiting the whole timeout: up to ~4 x CONNECT_TIMEOUT (~42 s with the default 10 s) per job
    instead of ~10 s (the comment above HANDSHAKE_RETRY_PAUSES says "about 2 s in all"). Against
    a real silent listener it is racy (paramiko sometimes reports "No existing session" instead):
    measured here 1 to 3 connections, 2.0 s to 6.7 s with timeout=2."""
    calls = connect_calls(banner_timeout())
    with pytest.raises(ssh.SshError):
        ssh.Connection(target(), portal_key)
    assert len(calls) == 1


def test_a_connection_reset_after_the_host_key_check_is_not_retried(connect_calls, portal_key):
    """paramiko's auth wait re-raises a socket error unchanged (auth_handler.wait_for_response):
    a reset during user authentication (after the host key was accepted and the key offered)
    is a ConnectionResetError, which `_cut_short` treats as a reload: the key is offered again,
    three more times. Low impact (fail2ban-style lockouts on the node), but it is a retry after
    authentication began, which the brief asked to rule out."""
    calls = connect_calls(ConnectionResetError(104, "Connection reset by peer"), keys_exchanged=True)
    with pytest.raises(ssh.SshError):
        ssh.Connection(target(), portal_key)
    assert len(calls) == 1


def test_a_connection_reset_before_the_keys_were_exchanged_is_tried_again(connect_calls, portal_key):
    """The other side of the rule: a reset during the key exchange is a reloading sshd."""
    calls = connect_calls(ConnectionResetError(104, "Connection reset by peer"))
    with pytest.raises(ssh.SshError):
        ssh.Connection(target(), portal_key)
    assert len(calls) == 1 + len(ssh.HANDSHAKE_RETRY_PAUSES)


# -- money: the CSV export ----------------------------------------------------------------------


def test_the_csv_amount_due_column_adds_up_to_what_was_received(client, db):
    """Nov ₩55 carried into Dec (₩6,600 + ₩55 = ₩6,655), Dec paid by card/transfer: ₩6,655 was
    received in all. The export's amount_due_krw says 55 for November (status paid) and 6655
    for December: the column sums to ₩6,710, counting November's ₩55 twice. The docstring says
    the column is "what Stripe or the bank received for it" (a void one shows 0 for that reason);
    a carried invoice collected with another received nothing itself."""
    from billing.models import Invoice
    from billing.services.invoices import invoice_mark_paid
    from tests.billing.test_attack_findings import carried_then_collected
    from tests.portal.test_review_admin import staff_user

    _org, _owner, nov, dec = carried_then_collected()
    invoice_mark_paid(invoice_id=dec.pk, reason="payment succeeded", payment_ref="pi_1")
    nov.refresh_from_db()
    assert nov.status == Invoice.Status.PAID
    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice"))
    export = client.post("/admin/billing/invoice/", {"action": "export_csv", "_selected_action": [nov.pk, dec.pk]})
    rows = list(csv.DictReader(io.StringIO(export.content.decode().lstrip("\ufeff"))))
    assert sum(int(r["amount_due_krw"]) for r in rows) == 6655


# -- demo data ----------------------------------------------------------------------------------


def test_seed_demo_survives_a_newest_demo_invoice_carried_forward(db, settings, capsys):
    """portal/management/demo_billing.py: `settle = invoice is not invoices[-1] or
    invoice.due_on < today` compares None with a date when the newest demo invoice is carried
    forward (no due date): TypeError, `make run` stops. Reached when STRIPE_MIN_CHARGE_KRW (an
    env setting the docs say to raise if Stripe refuses amounts) is above the demo month."""
    from django.core.management import call_command

    from billing.models import Invoice

    settings.STRIPE_MIN_CHARGE_KRW = 50_000_000
    call_command("seed_demo")
    assert Invoice.objects.filter(status=Invoice.Status.CARRIED).exists()


# -- migrations on existing data: checks that hold ----------------------------------------------

BEFORE_0017 = [
    ("billing", "0016_one_bank_transfer_pays_one_invoice"),
    ("portal", "0015_mailing_condition_checked_when_sent"),
]


@pytest.mark.django_db(transaction=True)
def test_0017_clears_the_due_date_of_invoices_ever_carried_and_adds_its_constraint_on_real_rows():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_0017)
    old = executor.loader.project_state(BEFORE_0017).apps
    org = old.get_model("portal", "Organisation").objects.create(kind="startup", name_ko="스타트업", name_en="S")
    Invoice = old.get_model("billing", "Invoice")
    Event = old.get_model("billing", "InvoiceEvent")
    common = {
        "organisation_id": org.pk, "issued_on": date(2026, 12, 1), "due_on": date(2026, 12, 15),
        "vat_percent": 10, "supplier_name": "C", "supplier_brn": "1208147521", "buyer_name": "S",
    }  # fmt: skip
    nov = Invoice.objects.create(
        month=date(2026, 11, 1), number="INV-2026-000001", status="carried",
        supply_krw=50, vat_krw=5, total_krw=55, **common,
    )  # fmt: skip
    dec = Invoice.objects.create(
        month=date(2026, 12, 1), number="INV-2026-000002", status="open",
        supply_krw=6000, vat_krw=600, total_krw=6600, carried_krw=55, **common,
    )  # fmt: skip
    Invoice.objects.filter(pk=nov.pk).update(carried_into_id=dec.pk)
    Event.objects.create(invoice_id=nov.pk, old_status="", new_status="carried", reason="issued")
    Event.objects.create(invoice_id=dec.pk, old_status="", new_status="open", reason="issued")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from billing.models import Invoice as Now

    assert Now.objects.get(pk=nov.pk).due_on is None
    assert Now.objects.get(pk=dec.pk).due_on == date(2026, 12, 15)


# -- money: an open invoice below a minimum raised after it was issued ----------------------------


def test_an_owner_paying_an_open_invoice_below_a_raised_minimum_is_not_told_to_pay_by_transfer(db, settings):
    """STRIPE_MIN_CHARGE_KRW raised to ₩10,000 after a ₩6,600 invoice was issued. Until the daily
    pass carries it forward, the owner's *Pay* is refused with "This invoice is paid by bank
    transfer, not by card." (code transfer), and the invoices page prints the bank-transfer
    sentence for it, while the charge job and docs/billing.md carry such an invoice forward
    (not due, added to the next invoice): the owner is told to transfer money the portal will
    also put on the next invoice."""
    from billing.services.invoices import invoice_issue
    from billing.services.payments import invoice_checkout_start
    from portal.errors import PortalError
    from tests.billing.helpers import at, grant_for, rate_card, startup

    rate_card("startup", 3000)
    org, owner = startup()
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=date(2026, 11, 1), today=date(2026, 12, 1))
    assert invoice.amount_due_krw == 6600
    settings.STRIPE_MIN_CHARGE_KRW = 10_000
    with pytest.raises(PortalError) as refused:
        invoice_checkout_start(invoice=invoice, user=owner, success_url="http://x/", cancel_url="http://x/")
    assert refused.value.code != "transfer", refused.value.message


# -- admin: a mistyped invoice address ----------------------------------------------------------


def test_a_mistyped_invoice_address_in_the_admin_is_not_a_server_error(client, db):
    """/admin/billing/invoice/<not a number>/change/ : Django's admin answers "doesn't exist"
    (a redirect with a message); InvoiceAdmin.change_view first runs
    `Invoice.objects.filter(pk=object_id, …).exists()` for `can_reissue`, which raises
    ValueError for a non-numeric id: a 500 for finance staff with the re-issue permission."""
    from tests.portal.test_review_admin import staff_user

    client.force_login(staff_user("finance@centre.kr", "billing.view_invoice", "billing.reissue_invoice"))
    response = client.get("/admin/billing/invoice/INV-2026-000001/change/")
    assert response.status_code in (302, 404)
