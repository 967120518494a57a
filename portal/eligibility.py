"""Automatic eligibility rules: pure functions of plain facts, no database.

Each rule returns a RuleResult: the rule name, an outcome (pass / warn / fail) and a reason
code with parameters. Reasons are rendered in the reader's language by `describe()`, so a
result stored today reads correctly in Korean and English alike. A fail blocks submission.

Reasons are written for one of two readers: the applicant, on their own application page, is
addressed ("Your e-mail address …", with what to do about a fail); reviewers and approvers, in the
admin, read about the applicant ("The applicant's e-mail address …") without instructions meant
for the applicant. Only the wording depends on the reader, never the stored row: every row, old
or new, renders for either reader from its code and parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import ValidationError
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from portal.validators import email_domain, validate_business_registration_number

PASS, WARN, FAIL = "pass", "warn", "fail"
APPLICANT, REVIEWER = "applicant", "reviewer"  # who reads a reason (`describe`)
ACADEMIC_KINDS = frozenset({"university", "research_institute"})
COMPANY_KINDS = frozenset({"startup", "sme", "enterprise"})


@dataclass(frozen=True)
class Facts:
    """Everything the rules look at, read once from the database by the caller."""

    today: date
    applicant_email: str
    applicant_email_verified: bool
    org_kind: str
    org_verified_domains: frozenset[str]
    org_business_registration_number: str | None
    org_founded_on: date | None
    org_has_overdue_invoice: bool
    call_kinds: frozenset[str]
    call_cap_gpu_hours: int
    call_window: tuple[date, date]
    call_max_startup_age_years: int | None
    call_budgets: dict[str, int] = field(default_factory=dict)  # GPU model → remaining GPU-hours
    gpu_model: str = ""  # the GpuModel's code
    gpu_model_name: str = ""
    gpus_per_node: int = 0  # of the requested GPU model
    gpu_count: int = 0
    gpu_hours: int = 0
    starts_on: date | None = None
    ends_on: date | None = None
    # Whether an operator confirmed the organisation's business registration number (claims are
    # unconfirmed: anyone can type a real company's public number).
    org_brn_verified: bool = True


@dataclass(frozen=True)
class RuleResult:
    rule: str
    outcome: str
    code: str
    params: dict = field(default_factory=dict)


def verified_email(f: Facts) -> RuleResult:
    if f.applicant_email_verified:
        return RuleResult("verified_email", PASS, "email_verified", {"email": f.applicant_email})
    return RuleResult("verified_email", FAIL, "email_not_verified", {"email": f.applicant_email})


def email_domain_matches(f: Facts) -> RuleResult:
    if f.org_kind not in ACADEMIC_KINDS:
        return RuleResult("email_domain", PASS, "domain_not_required")
    domain = email_domain(f.applicant_email)
    if domain in f.org_verified_domains:
        return RuleResult("email_domain", PASS, "domain_matches", {"domain": domain})
    return RuleResult(
        "email_domain",
        FAIL,
        "domain_mismatch",
        {"domain": domain, "domains": ", ".join(sorted(f.org_verified_domains))},
    )


def organisation_kind_allowed(f: Facts) -> RuleResult:
    if f.org_kind in f.call_kinds:
        return RuleResult("organisation_kind", PASS, "kind_allowed", {"kind": f.org_kind})
    return RuleResult("organisation_kind", FAIL, "kind_not_allowed", {"kind": f.org_kind})


def business_registration_number(f: Facts) -> RuleResult:
    if f.org_kind not in COMPANY_KINDS:
        return RuleResult("business_registration_number", PASS, "brn_not_required")
    try:  # the same rule as the forms: check digit, and never an unissued office or type code
        validate_business_registration_number(f.org_business_registration_number or "")
    except ValidationError:
        return RuleResult("business_registration_number", FAIL, "brn_invalid")
    if not f.org_brn_verified:
        return RuleResult("business_registration_number", WARN, "brn_unconfirmed")
    return RuleResult("business_registration_number", PASS, "brn_valid")


def add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def startup_age(f: Facts) -> RuleResult:
    if f.org_kind != "startup" or f.call_max_startup_age_years is None:
        return RuleResult("startup_age", PASS, "age_not_required")
    years = f.call_max_startup_age_years
    if f.org_founded_on is None:
        return RuleResult("startup_age", FAIL, "founded_unknown", {"years": years})
    if add_years(f.org_founded_on, years) >= f.today:
        return RuleResult("startup_age", PASS, "age_ok", {"founded": f.org_founded_on.isoformat(), "years": years})
    return RuleResult("startup_age", FAIL, "too_old", {"founded": f.org_founded_on.isoformat(), "years": years})


def gpu_model_offered(f: Facts) -> RuleResult:
    if f.gpu_model in f.call_budgets:
        return RuleResult("gpu_model", PASS, "model_offered", {"model": f.gpu_model_name or f.gpu_model})
    return RuleResult("gpu_model", FAIL, "model_not_offered", {"model": f.gpu_model})


def request_within_cap(f: Facts) -> RuleResult:
    params = {"hours": f.gpu_hours, "cap": f.call_cap_gpu_hours}
    if f.gpu_hours <= f.call_cap_gpu_hours:
        return RuleResult("cap", PASS, "within_cap", params)
    return RuleResult("cap", FAIL, "over_cap", params)


def request_within_budget(f: Facts) -> RuleResult:
    remaining = f.call_budgets.get(f.gpu_model, 0)
    params = {"hours": f.gpu_hours, "remaining": remaining}
    if f.gpu_hours <= remaining:
        return RuleResult("budget", PASS, "within_budget", params)
    return RuleResult("budget", WARN, "over_budget", params)


def no_overdue_invoice(f: Facts) -> RuleResult:
    if f.org_has_overdue_invoice:
        return RuleResult("overdue_invoice", FAIL, "overdue_invoice")
    return RuleResult("overdue_invoice", PASS, "no_overdue_invoice")


def dates_inside_window(f: Facts) -> RuleResult:
    start, end = f.call_window
    params = {"window_start": start.isoformat(), "window_end": end.isoformat()}
    if f.starts_on and f.ends_on and start <= f.starts_on < f.ends_on <= end:
        return RuleResult("dates", PASS, "dates_inside", params)
    return RuleResult("dates", FAIL, "dates_outside", params)


def gpu_count_fits_node(f: Facts) -> RuleResult:
    per_node = f.gpus_per_node
    params = {"count": f.gpu_count, "per_node": per_node, "model": f.gpu_model_name or f.gpu_model}
    if 1 <= f.gpu_count <= per_node:
        return RuleResult("gpu_count", PASS, "count_fits", params)
    return RuleResult("gpu_count", FAIL, "count_too_large", params)


RULES: list[Callable[[Facts], RuleResult]] = [
    verified_email,
    email_domain_matches,
    organisation_kind_allowed,
    business_registration_number,
    startup_age,
    gpu_model_offered,
    request_within_cap,
    request_within_budget,
    no_overdue_invoice,
    dates_inside_window,
    gpu_count_fits_node,
]


def evaluate(facts: Facts) -> list[RuleResult]:
    return [rule(facts) for rule in RULES]


RULE_LABELS = {
    "verified_email": _("Verified e-mail"),
    "email_domain": _("E-mail domain of the organisation"),
    "organisation_kind": _("Organisation kind"),
    "business_registration_number": _("Business registration number"),
    "startup_age": _("Startup age"),
    "gpu_model": _("GPU model"),
    "cap": _("Cap per application"),
    "budget": _("Remaining call budget"),
    "overdue_invoice": _("Overdue invoices"),
    "dates": _("Allocation window"),
    "gpu_count": _("GPUs per node"),
}

# The applicant's wording: addressed to them, with what to do about a fail.
MESSAGES = {
    "email_verified": _("Your e-mail address %(email)s is verified."),
    "email_not_verified": _("Verify your e-mail address %(email)s first (see the link we sent you)."),
    "domain_not_required": _("Not required for this organisation."),
    "domain_matches": _("Your e-mail domain %(domain)s belongs to the organisation."),
    "domain_mismatch": _(
        "Your e-mail domain %(domain)s is not a verified domain of the organisation (%(domains)s). "
        "Add and verify an address on one of them."
    ),
    "kind_allowed": _("%(kind)s organisations may apply to this call."),
    "kind_not_allowed": _("%(kind)s organisations may not apply to this call."),
    "brn_not_required": _("Not required for this organisation."),
    "brn_valid": _("The business registration number is valid."),
    "brn_unconfirmed": _(
        "The business registration number is valid but not yet confirmed by the centre. "
        "Owners upload the registration certificate on the organisation's page."
    ),
    "brn_invalid": _("The organisation's business registration number is not valid. Ask an owner to correct it."),
    "age_not_required": _("Not required for this organisation or call."),
    "founded_unknown": _("The founding date is missing; this call is for startups founded within %(years)s years."),
    "age_ok": _("Founded on %(founded)s: within %(years)s years."),
    "too_old": _("Founded on %(founded)s: this call is for startups founded within %(years)s years."),
    "model_offered": _("%(model)s is offered by this call."),
    "model_not_offered": _("The call does not offer this GPU model. Choose one it lists."),
    "within_cap": _("%(hours)s GPU-hours is within the cap of %(cap)s."),
    "over_cap": _("%(hours)s GPU-hours is over the cap of %(cap)s GPU-hours per application. Reduce the request."),
    "within_budget": _("%(hours)s GPU-hours fits the remaining budget of %(remaining)s."),
    "over_budget": _(
        "%(hours)s GPU-hours is more than the %(remaining)s GPU-hours left in the call; "
        "the award may be smaller than requested."
    ),
    "overdue_invoice": _("The organisation has an overdue invoice. Pay it before applying."),
    "no_overdue_invoice": _("No overdue invoices."),
    "dates_inside": _("The dates are inside the allocation window (%(window_start)s – %(window_end)s)."),
    "dates_outside": _(
        "The start and end must lie inside the allocation window (%(window_start)s – %(window_end)s), "
        "the end after the start."
    ),
    "count_fits": ngettext_lazy(
        "%(count)s GPU fits on one node (%(per_node)s per node).",
        "%(count)s GPUs fit on one node (%(per_node)s per node).",
        "count",
    ),
    "count_too_large": _("%(count)s GPUs do not fit on one node; a node has %(per_node)s. Request fewer GPUs."),
}


# The reviewers' wording where the applicant's addresses the applicant or tells them what to do;
# every other code reads the same for both. Only parameters every stored row has are used.
REVIEWER_MESSAGES = {
    "email_verified": _("The applicant's e-mail address %(email)s is verified."),
    "email_not_verified": _("The applicant's e-mail address %(email)s is not verified."),
    "domain_matches": _("The applicant's e-mail domain %(domain)s belongs to the organisation."),
    "domain_mismatch": _(
        "The applicant's e-mail domain %(domain)s is not a verified domain of the organisation (%(domains)s)."
    ),
    "brn_unconfirmed": _(
        "The business registration number is valid but only claimed: the centre has not yet confirmed it."
    ),
    "brn_invalid": _("The organisation's business registration number is not valid."),
    "model_not_offered": _("The call does not offer this GPU model."),
    "over_cap": _("%(hours)s GPU-hours is over the cap of %(cap)s GPU-hours per application."),
    "overdue_invoice": _("The organisation has an overdue invoice."),
    "dates_outside": _(
        "The requested dates are not inside the allocation window (%(window_start)s – %(window_end)s), "
        "or the end is not after the start."
    ),
    "count_too_large": _("%(count)s GPUs do not fit on one node; a node has %(per_node)s."),
}


def describe(code: str, params: dict, *, reader: str = APPLICANT) -> str:
    """The reason in the active language, worded for `reader` (APPLICANT or REVIEWER), with
    dates and numbers formatted for the language. An unknown code is shown as the code."""
    shown = dict(params)
    for key in ("hours", "cap", "remaining"):
        if key in shown:
            shown[key] = number_format(shown[key], force_grouping=True)
    for key in ("founded", "window_start", "window_end"):
        if key in shown:
            shown[key] = date_format(date.fromisoformat(shown[key]), "Y-m-d")
    if "kind" in shown:
        from portal.models import Organisation

        shown["kind"] = Organisation.Kind(shown["kind"]).label
    template = REVIEWER_MESSAGES.get(code) if reader == REVIEWER else None
    if template is None:
        template = MESSAGES.get(code)
    return str(template % shown) if template is not None else code


def rule_label(rule: str) -> str:
    return str(RULE_LABELS.get(rule, rule))
