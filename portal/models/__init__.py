"""The portal's domain: accounts, organisations, calls, applications, eligibility, reviews."""

from portal.models.calls import Call, CallBudget
from portal.models.organisations import (
    Invitation,
    Membership,
    Organisation,
    OrganisationDomain,
    User,
    UserManager,
)

__all__ = [
    "Call",
    "CallBudget",
    "Invitation",
    "Membership",
    "Organisation",
    "OrganisationDomain",
    "User",
    "UserManager",
]
