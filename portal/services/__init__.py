"""Writes that matter, as `<noun>_<verb>` functions. Views, the admin and jobs call these."""

from portal.errors import PortalError
from portal.services.organisations import (
    invitation_accept,
    invitation_create,
    invitation_from_token,
    invitation_token,
    membership_join_by_email_domain,
    membership_remove,
    membership_require_owner,
    membership_set_role,
    organisation_create,
    organisation_domain_verify,
    verified_emails,
)

__all__ = [
    "PortalError",
    "invitation_accept",
    "invitation_create",
    "invitation_from_token",
    "invitation_token",
    "membership_join_by_email_domain",
    "membership_remove",
    "membership_require_owner",
    "membership_set_role",
    "organisation_create",
    "organisation_domain_verify",
    "verified_emails",
]
