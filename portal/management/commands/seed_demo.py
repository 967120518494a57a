"""The demo world of DESIGN.md. Idempotent: a second run changes nothing and prints the same
logins. Refuses to run in production."""

from __future__ import annotations

import contextlib
from datetime import date, timedelta
from pathlib import Path

from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.utils import decrypt
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from allocations.models import Node
from billing.models import Rate
from portal.management.demo_billing import demo_invoiced_months, seed_demo_invoices
from portal.management.operator import OperatorCommand
from portal.models import Application, Call, CallBudget, Membership, Organisation, OrganisationDomain, User

# (kind, name_ko, name_en, domains, business registration number, founded)
ORGANISATIONS = {
    "univ": ("university", "데모국립대학교", "Demo National University", ["demo-univ.ac.kr"], None, None),
    # The startup's number is not the development supplier's (BILLING_SUPPLIER_BRN, 1208147521):
    # an invoice names two different companies.
    "startup": ("startup", "데모AI스타트업", "Demo AI Startup", ["demo-startup.kr"], "2208162517", date(2024, 3, 1)),
    "ministry": ("public_agency", "데모부처", "Demo Ministry", ["demo-ministry.go.kr"], None, None),
    "centre": ("public_agency", "데모센터", "Demo Centre", ["demo-centre.kr"], None, None),
    "institute": ("research_institute", "데모연구원", "Demo Research Institute", ["demo-inst.re.kr"], None, None),
    "sme": ("sme", "데모중소기업", "Demo SME", ["demo-sme.co.kr"], "2148612341", date(2015, 6, 1)),
    "enterprise": ("enterprise", "데모대기업", "Demo Enterprise", ["demo-corp.co.kr"], "1048100048", date(1990, 1, 2)),
}

# (email, organisation, membership role, groups, is_staff, is_superuser)
USERS = [
    ("researcher@demo-univ.ac.kr", "univ", "owner", [], False, False),
    ("founder@demo-startup.kr", "startup", "owner", [], False, False),
    ("reviewer@demo-ministry.go.kr", "ministry", "member", ["reviewers"], True, False),
    ("approver@demo-ministry.go.kr", "ministry", "member", ["approvers"], True, False),
    ("operator@demo-centre.kr", "centre", "member", ["operators"], True, False),
    ("finance@demo-centre.kr", "centre", "billing", ["finance"], True, False),
    ("admin@demo-centre.kr", "centre", "owner", [], True, True),
]

# Group → permission codenames ("app_label.codename"). Permissions of models that do not exist
# yet are skipped, so later issues only add lines here.
GROUP_PERMISSIONS = {
    "reviewers": [
        "portal.view_organisation",
        "portal.view_call",
        "portal.view_callbudget",
        "portal.view_application",
        "portal.view_eligibilityresult",
        "portal.add_review",
        "portal.change_review",
        "portal.view_review",
    ],
    "approvers": [
        "portal.view_organisation",
        "portal.view_call",
        "portal.view_callbudget",
        "portal.view_application",
        "portal.view_eligibilityresult",
        "portal.view_review",
        "portal.decide_application",
        "allocations.view_grant",
    ],
    "operators": [
        "allocations.add_node",
        "allocations.change_node",
        "allocations.view_node",
        "allocations.view_gpu",
        "allocations.add_gpumodel",
        "allocations.change_gpumodel",
        "allocations.delete_gpumodel",
        "allocations.view_gpumodel",
        "allocations.view_grant",
        "allocations.change_grant",
        "allocations.view_provisioningtask",
        "allocations.change_provisioningtask",
        "allocations.view_nodeaccount",
        "allocations.view_jupytersession",
        # docs/operations.md, "Metering": operators read the findings and mark them resolved
        # (change), and read usage hours, received sample batches and the outbox's backlog.
        "allocations.view_notice",
        "allocations.change_notice",
        "allocations.view_usagehour",
        "allocations.view_samplebatch",
        "portal.view_outboxmessage",
        "portal.view_organisation",
        # Operators act on organisations (domains, node access of members): they see members and
        # the audit log. Reviewers and approvers do not (docs/operations.md, "Demo groups").
        "portal.view_membership",
        "portal.view_organisationauditlog",
        # docs/operations.md, "Organisations and e-mail domains": operators verify domains and
        # keep the institutional domain list.
        "portal.view_organisationdomain",
        "portal.change_organisationdomain",
        "portal.add_institutionaldomain",
        "portal.change_institutionaldomain",
        "portal.delete_institutionaldomain",
        "portal.view_institutionaldomain",
        "portal.view_mailing",
    ],
    "finance": [
        "billing.add_rate",
        "billing.change_rate",
        "billing.view_rate",
        "allocations.view_gpumodel",
        "portal.view_organisation",
        # docs/billing.md: what finance reads and does in the admin.
        "billing.view_invoice",
        "billing.view_invoiceline",
        "billing.view_invoiceevent",
        "billing.view_creditnote",
        "billing.view_banktransfer",
        "billing.view_hourpack",
        "billing.view_billingaccount",
        "billing.view_stripeevent",
        "billing.view_invoicingrun",
        "billing.void_invoice",
        "billing.issue_credit_note",
        "billing.reissue_invoice",
        "billing.record_transfer",
        "billing.add_invoicingrun",  # "Invoice a month"
        "portal.view_mailing",  # whether the invoice e-mails went out, and to whom
    ],
}

# KRW per GPU-hour by model and tier.
RATES = {
    "A100-80GB": {"academic": 1800, "public": 2000, "startup": 2200, "enterprise": 3200},
    "H100-80GB": {"academic": 3000, "public": 3300, "startup": 3600, "enterprise": 5200},
    "H200-141GB": {"academic": 3800, "public": 4200, "startup": 4600, "enterprise": 6500},
}

# Placeholder nodes of earlier versions of this command: never reachable, removed if unused.
OLD_PLACEHOLDER_NODES = ["gpu-a100-01", "gpu-h100-01", "gpu-h100-02", "gpu-h200-01"]


class Command(OperatorCommand):
    help = "Create the demo world (organisations, users, groups, calls, rates, the demo node). Idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--demo-node",
            metavar="FILE",
            help="the demo GPU node `make run` started (its description, written by scripts/devstack.py):"
            " register it, pin its host key, install the agent and bring it in line with the database",
        )

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError(_("seed_demo never runs in production (PORTAL_ENV=production)."))
        with transaction.atomic():
            orgs = self.seed_organisations()
            self.seed_groups()
            secrets = self.seed_users(orgs)
            self.seed_calls()
            self.remove_placeholder_nodes()
            self.seed_rates()
            self.seed_applications(orgs)
        # The monthly run commits each organisation on its own: after the world it prices.
        seed_demo_invoices(orgs["startup"])
        self.print_logins(secrets)
        if options.get("demo_node"):
            from portal.management.demo_node import seed_demo_node

            seed_demo_node(Path(options["demo_node"]), self.stdout, self.style)

    def seed_organisations(self) -> dict[str, Organisation]:
        orgs = {}
        for key, (kind, name_ko, name_en, domains, brn, founded) in ORGANISATIONS.items():
            org, _created = Organisation.objects.get_or_create(
                name_en=name_en,
                defaults={
                    "kind": kind,
                    "name_ko": name_ko,
                    "business_registration_number": brn,
                    # The demo centre has "checked" the demo startup's certificate.
                    "brn_status": Organisation.BrnStatus.VERIFIED if brn else Organisation.BrnStatus.NONE,
                    "founded_on": founded,
                },
            )
            if org.business_registration_number == settings.BILLING_SUPPLIER_BRN and brn:
                # Demo worlds seeded before the startup had a number of its own.
                Organisation.objects.filter(pk=org.pk).update(business_registration_number=brn)
                org.business_registration_number = brn
            for domain in domains:
                OrganisationDomain.objects.get_or_create(organisation=org, domain=domain, defaults={"verified": True})
            orgs[key] = org
        return orgs

    def seed_groups(self) -> None:
        for name, codenames in GROUP_PERMISSIONS.items():
            group, _created = Group.objects.get_or_create(name=name)
            perms = []
            for full in codenames:
                app_label, codename = full.split(".")
                perm = Permission.objects.filter(content_type__app_label=app_label, codename=codename).first()
                if perm:
                    perms.append(perm)
            group.permissions.add(*perms)

    def seed_users(self, orgs: dict[str, Organisation]) -> dict[str, str]:
        secrets = {}
        for email, org_key, role, groups, is_staff, is_superuser in USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(
                    email=email, password=settings.DEMO_PASSWORD, is_staff=is_staff, is_superuser=is_superuser
                )
            EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
            Membership.objects.get_or_create(user=user, organisation=orgs[org_key], defaults={"role": role})
            user.groups.add(*Group.objects.filter(name__in=groups))
            if is_staff:
                totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
                if totp is None:
                    totp = TOTP.activate(user, generate_totp_secret()).instance
                secrets[email] = decrypt(totp.data["secret"])
        return secrets

    def seed_calls(self) -> None:
        now = timezone.now()
        today = timezone.localdate()
        academic = Call.objects.filter(title_en="2027 Academic AI Research GPU Support").first()
        if academic is None:
            academic = Call.objects.create(
                title_ko="2027 학술 AI 연구 GPU 지원",
                title_en="2027 Academic AI Research GPU Support",
                description_ko="대학과 연구기관의 AI 연구를 위한 GPU 시간 지원 사업입니다.",
                description_en="Subsidised GPU time for AI research at universities and research institutes.",
                opens_at=now - timedelta(days=7),
                closes_at=now + timedelta(days=60),
                eligible_kinds=["university", "research_institute"],
                cap_gpu_hours=20000,
                copay_percent=0,
                # Starts today: an approval in the demo gives access at once on the demo node.
                allocation_starts_on=today,
                allocation_ends_on=today + timedelta(days=365),
            )
            CallBudget.objects.create(call=academic, gpu_model="H100-80GB", gpu_hours=500000)
            CallBudget.objects.create(call=academic, gpu_model="A100-80GB", gpu_hours=300000)
        startup = Call.objects.filter(title_en="2027 AI Startup GPU Voucher").first()
        if startup is None:
            startup = Call.objects.create(
                title_ko="2027 AI 스타트업 GPU 바우처",
                title_en="2027 AI Startup GPU Voucher",
                description_ko="창업 7년 이내 AI 스타트업을 위한 GPU 바우처입니다 (자부담 20%).",
                description_en="GPU vouchers for AI startups founded within seven years (20% co-payment).",
                opens_at=now - timedelta(days=3),
                closes_at=now + timedelta(days=45),
                eligible_kinds=["startup"],
                cap_gpu_hours=10000,
                copay_percent=20,
                past_subsidy="grace",  # a founder keeps working with a card or prepaid hours
                allocation_starts_on=today + timedelta(days=7),
                allocation_ends_on=today + timedelta(days=7 + 180),
                max_startup_age_years=7,
            )
            CallBudget.objects.create(call=startup, gpu_model="H100-80GB", gpu_hours=200000)
            CallBudget.objects.create(call=startup, gpu_model="H200-141GB", gpu_hours=100000)

    def remove_placeholder_nodes(self) -> None:
        """Earlier demo worlds had unreachable placeholder nodes; they go unless something refers
        to them (then an operator decides)."""
        for node in Node.objects.filter(hostname__in=OLD_PLACEHOLDER_NODES, host_key=""):
            if not node.gpus.exists():
                with contextlib.suppress(ProtectedError):
                    node.delete()

    def seed_rates(self) -> None:
        # From January of the earliest month the demo invoices (the previous year's in January).
        effective = date(demo_invoiced_months()[0].year, 1, 1)
        for model, tiers in RATES.items():
            for tier, krw in tiers.items():
                Rate.objects.get_or_create(
                    gpu_model=model, price_tier=tier, effective_from=effective, defaults={"krw_per_gpu_hour": krw}
                )

    def seed_applications(self, orgs: dict[str, Organisation]) -> None:
        """One submitted application in the academic call, so the review queue is not empty."""
        from portal.services import applications as svc

        researcher = User.objects.get(email="researcher@demo-univ.ac.kr")
        call = Call.objects.get(title_en="2027 Academic AI Research GPU Support")
        if Application.objects.filter(principal_investigator=researcher, call=call).exists():
            return
        application = svc.application_create_draft(
            call=call,
            organisation=orgs["univ"],
            user=researcher,
            team=[],
            data={
                "title": "한국어 대규모 언어 모델 사전학습 (Korean LLM pre-training)",
                "abstract": "A 7B-parameter Korean language model trained on public corpora.",
                "field": "nlp",
                "gpu_model": "H100-80GB",
                "gpu_count": 8,
                "gpu_hours": 12000,
                "starts_on": call.allocation_starts_on,
                "ends_on": call.allocation_starts_on + timedelta(days=90),
                "justification": "8 GPUs for about 63 days of training and evaluation.",
                "software": "PyTorch, Megatron-LM",
                "data_sensitivity": "public",
            },
        )
        svc.application_submit(application=application, actor=researcher)

    def print_logins(self, secrets: dict[str, str]) -> None:
        out = self.stdout
        out.write(
            self.style.SUCCESS(
                _("Demo world ready. Log in at %(url)s") % {"url": f"{settings.SITE_URL}/accounts/login/"}
            )
        )
        out.write(_("Password for every demo user: %(password)s") % {"password": settings.DEMO_PASSWORD})
        korean = get_language() == "ko"
        for email, org, _role, groups, is_staff, is_superuser in USERS:
            # As the README's table says it: the owner of an organisation, or the staff groups.
            name = ORGANISATIONS[org][1 if korean else 2]
            what = (
                _("superuser")
                if is_superuser
                else (", ".join(groups) or _("owner of %(organisation)s") % {"organisation": name})
            )
            line = f"  {email:<32} {what}"
            if is_staff:
                line += "  " + _("TOTP secret: %(secret)s") % {"secret": secrets[email]}
            out.write(line)
        out.write(
            _(
                "Staff must enter a TOTP code: `make manage ARGS=demo_totp` prints the current ones"
                " (or add the secret to an authenticator app)."
            )
        )
