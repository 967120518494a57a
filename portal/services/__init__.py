"""Writes that matter, as `<noun>_<verb>` functions. Views, the admin and jobs call these."""

from portal.errors import PortalError
from portal.services.business_numbers import (
    organisation_brn_confirm,
    organisation_brn_move,
    organisation_brn_upload_document,
)
from portal.services.domains import organisation_domain_verify
from portal.services.memberships import application_change_pi, membership_remove, membership_set_role
from portal.services.organisations import (
    invitation_accept,
    invitation_create,
    invitation_from_token,
    invitation_token,
    membership_join_by_email_domain,
    membership_require_owner,
    organisation_create,
    verified_emails,
)

__all__ = [
    "PortalError",
    "application_change_pi",
    "invitation_accept",
    "invitation_create",
    "invitation_from_token",
    "invitation_token",
    "membership_join_by_email_domain",
    "membership_remove",
    "membership_require_owner",
    "membership_set_role",
    "organisation_brn_confirm",
    "organisation_brn_move",
    "organisation_brn_upload_document",
    "organisation_create",
    "organisation_domain_verify",
    "verified_emails",
]
