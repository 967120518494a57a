from portal.views.applications import (
    application_apply,
    application_attachment,
    application_detail,
    application_edit,
    application_list,
    application_withdraw,
)
from portal.views.organisations import (
    call_list,
    dashboard,
    healthz,
    home,
    invitation_accept,
    invitation_create,
    membership_update,
    organisation_create,
    organisation_detail,
    organisation_list,
)

__all__ = [
    "application_apply",
    "application_attachment",
    "application_detail",
    "application_edit",
    "application_list",
    "application_withdraw",
    "call_list",
    "dashboard",
    "healthz",
    "home",
    "invitation_accept",
    "invitation_create",
    "membership_update",
    "organisation_create",
    "organisation_detail",
    "organisation_list",
]
