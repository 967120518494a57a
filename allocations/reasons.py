"""The reasons the grant services store in a grant's `status_reason` and its events, in English as
they always were (allocations.services.grants, billing.services.consequences, the grant admin's
actions), shown to staff in their language (`Grant.status_reason_text`, `GrantEvent.reason_text`).
The same for a node account's events (allocations.services.provisioning, .grants:
`NodeAccountEvent.reason_text`). A phrase changed where it is written must change here too
(tests/billing/test_korean_admin.py, tests/portal/test_korean_admin.py)."""

from django.utils.translation import gettext_noop

from portal.stored_text import Phrases

GRANT_REASONS = Phrases(
    gettext_noop("access is ready"),
    gettext_noop("the grant ended before it could be placed"),
    gettext_noop("the grant period ended"),
    gettext_noop("resumed"),
    gettext_noop("suspended by staff"),
    gettext_noop("revoked by staff"),
    gettext_noop("suspended: invoice overdue"),
    gettext_noop("suspended: subsidised hours used up"),
    gettext_noop("GPUs reserved on %(node)s; access opens on %(date)s."),
    gettext_noop("placed on %(node)s"),
    gettext_noop("expiry failed: %(text)s"),
    gettext_noop("%(kind)s failed: %(text)s"),
)

ACCOUNT_REASONS = Phrases(
    gettext_noop("account created"),
    gettext_noop("access revoked"),
    gettext_noop("access granted again"),
)
