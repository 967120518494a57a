"""The portal's domain: accounts, organisations, calls, applications, eligibility, reviews."""

from portal.models.applications import Application, ApplicationEvent, EligibilityResult, Review
from portal.models.calls import Call, CallBudget
from portal.models.organisations import (
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
    "Invitation",
    "Membership",
    "Organisation",
    "OrganisationDomain",
    "OutboxMessage",
    "Review",
    "User",
    "UserManager",
]
