"""Facts for an eligible request, changed per test with dataclasses.replace."""

from dataclasses import replace
from datetime import date

from portal.eligibility import Facts

BASE = Facts(
    today=date(2026, 11, 29),
    applicant_email="kim@snu-demo.ac.kr",
    applicant_email_verified=True,
    org_kind="university",
    org_verified_domains=frozenset({"snu-demo.ac.kr"}),
    org_business_registration_number=None,
    org_founded_on=None,
    org_has_overdue_invoice=False,
    call_kinds=frozenset({"university", "research_institute"}),
    call_cap_gpu_hours=20000,
    call_window=(date(2027, 1, 1), date(2027, 12, 31)),
    call_max_startup_age_years=None,
    call_budgets={"H100-80GB": 50000},
    gpu_model="H100-80GB",
    gpu_model_name="NVIDIA H100 80GB",
    gpus_per_node=8,
    gpu_count=8,
    gpu_hours=10000,
    starts_on=date(2027, 1, 1),
    ends_on=date(2027, 6, 30),
)

STARTUP = replace(
    BASE,
    applicant_email="ceo@dl-startup.kr",
    org_kind="startup",
    org_verified_domains=frozenset(),
    org_business_registration_number="1208147521",
    org_founded_on=date(2022, 3, 1),
    call_kinds=frozenset({"startup"}),
    call_max_startup_age_years=7,
)


def facts(base=BASE, **changes) -> Facts:
    return replace(base, **changes)
