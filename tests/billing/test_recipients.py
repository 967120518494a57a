"""Who is told about an organisation's money and its grants' subsidies is decided when the e-mail
is sent, not when it was queued: a billing member removed, an owner downgraded or an account
deactivated while the mail waited hears nothing; a principal investigator who left the
organisation gets no subsidy notice while the billing members (or owners) still do; with nobody
left the e-mail is recorded as skipped, with the reason, for staff."""

from __future__ import annotations

import smtplib
from datetime import date, timedelta

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.core import mail
from django.core.mail.backends import locmem
from django.utils import timezone

from billing.services.consequences import grant_subsidy_check
from billing.services.invoices import invoice_issue, invoice_payment_failed
from portal.mail import mailing_send
from portal.models import Mailing, Membership
from tests.billing.helpers import at, grant_for, rate_card, startup
from tests.factories import MembershipFactory, UserFactory

NOV = date(2026, 11, 1)
R = Membership.Role


def billing_member(org):
    return org.memberships.get(role=R.BILLING).user


def told() -> list[str]:
    return sorted(address for m in mail.outbox for address in m.to)


def queued_invoice(jobs, org):
    """The organisation's November invoice, its e-mail queued (in RQ) but not yet sent."""
    rate_card("startup", 3000)
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    with jobs.committed():
        invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    assert mail.outbox == []
    return invoice


def test_a_billing_member_removed_while_the_invoice_mail_waited_is_not_told(db, jobs):
    org, owner = startup()
    removed = billing_member(org)
    queued_invoice(jobs, org)
    Membership.objects.filter(organisation=org, user=removed).delete()
    jobs.run()
    # No billing member is left: the owners hear about the invoice instead; the removed one nothing.
    assert told() == [owner.email]
    assert Mailing.objects.get().recipients == [owner.email]


def test_an_owner_downgraded_to_member_before_the_payment_news_is_sent_is_not_told(db, jobs):
    org, owner = startup()
    Membership.objects.filter(organisation=org, role=R.BILLING).delete()
    other_owner = MembershipFactory(organisation=org, role=R.OWNER, user=UserFactory(email="second-owner@s.kr")).user
    rate_card("startup", 3000)
    grant_for(org, intervals=[(at(2, 9), at(2, 19))])
    invoice, _ = invoice_issue(organisation_id=org.pk, month=NOV, today=date(2026, 12, 1))
    with jobs.committed():
        invoice_payment_failed(invoice_id=invoice.pk, error="card declined")
    Membership.objects.filter(organisation=org, user=owner).update(role=R.MEMBER)
    jobs.run()
    assert told() == [other_owner.email]
    assert "card declined" in mail.outbox[0].body


def test_a_deactivated_billing_member_gets_nothing_and_the_owners_are_told(db, jobs):
    org, owner = startup()
    deactivated = billing_member(org)
    queued_invoice(jobs, org)
    deactivated.is_active = False
    deactivated.save(update_fields=["is_active"])
    jobs.run()
    assert told() == [owner.email]


def test_a_deactivated_account_is_not_told_even_when_it_is_the_only_billing_member_at_queueing(db, jobs):
    org, owner = startup()
    deactivated = billing_member(org)
    deactivated.is_active = False
    deactivated.save(update_fields=["is_active"])
    queued_invoice(jobs, org)
    jobs.run()
    assert told() == [owner.email]


def test_with_nobody_left_to_tell_the_mail_is_skipped_with_the_reason_shown_to_staff(client, db, jobs):
    org, owner = startup()
    queued_invoice(jobs, org)
    Membership.objects.filter(organisation=org, role=R.BILLING).delete()
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    assert jobs.run() == 1  # the one queued mailing, which fails nothing
    assert mail.outbox == []
    mailing = Mailing.objects.get()
    assert (mailing.status, mailing.recipients) == (Mailing.Status.SKIPPED, [])
    assert mailing.reason.startswith("nobody left to tell: ") and "billing members" in mailing.reason
    assert jobs.run() == 0  # not retried: skipped is final
    staff = UserFactory(email="finance@centre.kr", is_staff=True, is_superuser=True)
    TOTP.activate(staff, generate_totp_secret())
    client.force_login(staff)
    page = client.get("/admin/portal/mailing/?status=skipped").content.decode()
    assert "nobody left to tell" in page and "invoice_issued" in page


def test_an_organisation_with_nobody_to_tell_when_invoiced_records_a_skipped_mailing_and_queues_no_job(db, jobs):
    org, owner = startup()
    Membership.objects.filter(organisation=org, role=R.BILLING).delete()
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    queued_invoice(jobs, org)
    assert jobs.run() == 0 and mail.outbox == []
    assert Mailing.objects.get().reason.startswith("nobody to tell when queued: ")


def subsidy_at_85_percent(jobs, org):
    """Grant of the organisation (PI: its first owner) at 85 % of its 10 subsidised hours; the
    80 % notice queued but not yet sent."""
    now = timezone.now()
    grant = grant_for(org, hours=10, intervals=[(now - timedelta(hours=8, minutes=30), None)])
    with jobs.committed():
        assert grant_subsidy_check(grant_id=grant.pk, now=now) == "85%"
    assert mail.outbox == []
    return grant


def test_a_pi_who_left_the_organisation_gets_no_subsidy_notice_and_the_billing_members_do(db, jobs):
    org, pi = startup()
    MembershipFactory(organisation=org, role=R.OWNER, user=UserFactory(email="remaining-owner@s.kr"))
    subsidy_at_85_percent(jobs, org)
    Membership.objects.filter(organisation=org, user=pi).delete()
    jobs.run()
    assert told() == [billing_member(org).email]
    assert "80 %" in mail.outbox[0].subject


def test_without_billing_members_the_remaining_owners_get_the_subsidy_notice_the_pi_who_left_none(db, jobs):
    org, pi = startup()
    Membership.objects.filter(organisation=org, role=R.BILLING).delete()
    remaining = MembershipFactory(organisation=org, role=R.OWNER, user=UserFactory(email="remaining@s.kr")).user
    subsidy_at_85_percent(jobs, org)
    Membership.objects.filter(organisation=org, user=pi).delete()
    jobs.run()
    assert told() == [remaining.email]


def test_a_pi_still_in_the_organisation_and_the_billing_member_are_both_told(db, jobs):
    org, pi = startup()
    subsidy_at_85_percent(jobs, org)
    jobs.run()
    assert told() == sorted([pi.email, billing_member(org).email])


def test_a_deactivated_pi_gets_no_subsidy_notice(db, jobs):
    org, pi = startup()
    subsidy_at_85_percent(jobs, org)
    pi.is_active = False
    pi.save(update_fields=["is_active"])
    jobs.run()
    assert told() == [billing_member(org).email]


def test_when_the_pi_role_is_passed_on_and_the_old_pi_leaves_the_new_pi_gets_the_waiting_notice(db, jobs):
    from portal.services.memberships import application_change_pi, membership_remove

    org, old_pi = startup()
    owner = MembershipFactory(organisation=org, role=R.OWNER, user=UserFactory(email="owner-b@s.kr")).user
    new_pi = MembershipFactory(organisation=org, role=R.MEMBER, user=UserFactory(email="new-pi@s.kr")).user
    grant = subsidy_at_85_percent(jobs, org)
    application_change_pi(application=grant.application, new_pi=new_pi, actor=owner)
    membership_remove(membership=Membership.objects.get(organisation=org, user=old_pi), actor=owner)
    jobs.run()
    assert told() == sorted([new_pi.email, billing_member(org).email])


def test_an_invoice_voided_before_its_e_mail_went_out_is_not_announced(db, jobs):
    """Finance voided a wrong invoice while its e-mail waited (a slow queue, a mail server down):
    the members were told "due on …" for an invoice they no longer owe."""
    from billing.services.invoices import invoice_void
    from tests.portal.test_review_admin import staff_user

    org, _owner = startup()
    invoice = queued_invoice(jobs, org)
    invoice_void(invoice_id=invoice.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="wrong buyer")
    jobs.run()
    assert not [m for m in mail.outbox if invoice.number in m.subject]
    issued = Mailing.objects.get(template="invoice_issued")
    assert issued.status == Mailing.Status.SKIPPED and "void" in issued.reason


class MailServerFailingOnce(locmem.EmailBackend):
    """The mail server refuses the first message to one address, then takes everything;
    `meanwhile` runs once, while the first message is being delivered (another request's work)."""

    refuse = set()
    meanwhile = None

    def send_messages(self, messages):
        for message in messages:
            refused = self.refuse & set(message.to)
            if refused:
                self.refuse -= refused
                raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")
        if MailServerFailingOnce.meanwhile:
            work, MailServerFailingOnce.meanwhile = MailServerFailingOnce.meanwhile, None
            work()
        return super().send_messages(messages)


@pytest.fixture
def flaky_mail_server(settings):
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.MailServerFailingOnce"}}
    yield MailServerFailingOnce
    MailServerFailingOnce.refuse, MailServerFailingOnce.meanwhile = set(), None


def two_billing_members_and_a_waiting_invoice_mail(jobs):
    org, _owner = startup()
    first = billing_member(org)
    second = MembershipFactory(organisation=org, role=R.BILLING, user=UserFactory(email="zz-second@s.kr")).user
    invoice = queued_invoice(jobs, org)
    return org, first, second, invoice, Mailing.objects.get(template="invoice_issued")


def failed_half_way(jobs, mail_server):
    """The invoice's e-mail sent to the first billing member, then the mail server failing on the
    second: the job failed (RQ's failed registry), waiting for a retry."""
    org, first, second, invoice, mailing = two_billing_members_and_a_waiting_invoice_mail(jobs)
    mail_server.refuse = {second.email}
    with pytest.raises(smtplib.SMTPServerDisconnected):
        mailing_send(mailing_id=mailing.pk)
    assert told() == [first.email]
    return org, first, second, invoice, mailing


def test_a_mailing_retried_after_the_mail_server_failed_half_way_sends_each_member_one_copy(
    db, jobs, flaky_mail_server
):
    _org, first, second, _invoice, mailing = failed_half_way(jobs, flaky_mail_server)
    mailing.refresh_from_db()
    assert (mailing.status, mailing.recipients) == (Mailing.Status.QUEUED, [first.email])
    # The retry (RQ's failed registry, requeued by an operator) sends only the copy still owed.
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    assert told() == sorted([first.email, second.email])
    mailing.refresh_from_db()
    assert (mailing.status, sorted(mailing.recipients)) == (Mailing.Status.SENT, sorted([first.email, second.email]))
    assert mailing.reason == ""
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT and len(mail.outbox) == 2


def test_a_member_removed_before_the_retry_does_not_get_the_copy_the_failure_held_back(db, jobs, flaky_mail_server):
    org, first, second, _invoice, mailing = failed_half_way(jobs, flaky_mail_server)
    Membership.objects.filter(organisation=org, user=second).delete()
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    assert told() == [first.email]
    assert Mailing.objects.get(pk=mailing.pk).recipients == [first.email]


def test_a_member_removed_while_the_first_copy_goes_out_gets_none(db, jobs, flaky_mail_server):
    org, first, second, _invoice, mailing = two_billing_members_and_a_waiting_invoice_mail(jobs)
    flaky_mail_server.meanwhile = lambda: Membership.objects.filter(organisation=org, user=second).delete()
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    assert told() == [first.email]


def test_a_member_who_changed_address_before_the_retry_is_not_sent_a_second_copy(db, jobs, flaky_mail_server):
    _org, first, second, _invoice, mailing = failed_half_way(jobs, flaky_mail_server)
    old_address = first.email
    first.email = "first.new@s.kr"
    first.save(update_fields=["email"])
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    assert [m.to for m in mail.outbox] == [[old_address], [second.email]]


def test_an_invoice_voided_between_the_copies_ends_the_mailing_as_sent_with_why_the_others_were_not(
    db, jobs, flaky_mail_server
):
    from billing.services.invoices import invoice_void
    from tests.portal.test_review_admin import staff_user

    _org, first, _second, invoice, mailing = failed_half_way(jobs, flaky_mail_server)
    invoice_void(invoice_id=invoice.pk, actor=staff_user("f@centre.kr", "billing.void_invoice"), reason="wrong buyer")
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    mailing.refresh_from_db()
    assert mailing.recipients == [first.email] and told() == [first.email]
    assert mailing.reason.startswith("the others not told: no longer applies: ") and "void" in mailing.reason


def test_e_mails_to_organisations_are_kept_for_the_retention_then_deleted_but_never_while_queued(db, jobs, settings):
    from portal.mail import mailings_prune

    settings.MAILING_RETENTION_DAYS = 400
    org, _owner = startup()
    queued_invoice(jobs, org)
    jobs.run()
    sent = Mailing.objects.get(template="invoice_issued")
    assert sent.status == Mailing.Status.SENT
    waiting = Mailing.objects.create(template="invoice_paid", audience=sent.audience, refs=sent.refs)
    old = sent.done_at + timedelta(days=400)
    Mailing.objects.filter(pk=waiting.pk).update(created_at=sent.done_at - timedelta(days=500))
    assert mailings_prune(now=old - timedelta(minutes=1)) == 0  # not yet 400 days
    assert mailings_prune(now=old + timedelta(minutes=1)) == 1
    assert list(Mailing.objects.values_list("pk", flat=True)) == [waiting.pk]  # queued: kept


class MailServerRefusingAnAddress(locmem.EmailBackend):
    """The mail server answers 550 (no such mailbox) for one address."""

    refused = ""

    def send_messages(self, messages):
        for message in messages:
            if self.refused in message.to:
                raise smtplib.SMTPRecipientsRefused({self.refused: (550, b"5.1.1 no such mailbox")})
        return super().send_messages(messages)


def test_an_address_refused_for_good_does_not_hold_back_the_copies_after_it(db, jobs, settings):
    settings.MAILERS = {"default": {"BACKEND": f"{__name__}.MailServerRefusingAnAddress"}}
    _org, first, second, _invoice, mailing = two_billing_members_and_a_waiting_invoice_mail(jobs)
    MailServerRefusingAnAddress.refused = first.email
    assert mailing_send(mailing_id=mailing.pk) == Mailing.Status.SENT
    assert told() == [second.email]
    mailing.refresh_from_db()
    assert mailing.recipients == [second.email]
    assert mailing.reason == "the mail server refused 1 address(es) for good"
