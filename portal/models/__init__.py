"""The portal's domain: accounts, organisations, calls, applications, eligibility, reviews."""

from portal.models.applications import Application, ApplicationEvent, EligibilityResult, Review
from portal.models.audit import OrganisationAuditLog, audit
from portal.models.calls import Call, CallBudget
from portal.models.mailings import Mailing
from portal.models.organisations import (
    InstitutionalDomain,
    Invitation,
    Membership,
    Organisation,
    OrganisationDomain,
    User,
    UserManager,
)
from portal.models.outbox import OutboxMessage

__all__ = [
    "Application",
    "ApplicationEvent",
    "Call",
    "CallBudget",
    "EligibilityResult",
    "InstitutionalDomain",
    "Invitation",
    "Mailing",
    "Membership",
    "Organisation",
    "OrganisationAuditLog",
    "OrganisationDomain",
    "OutboxMessage",
    "Review",
    "User",
    "UserManager",
    "audit",
]
