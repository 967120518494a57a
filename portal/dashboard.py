"""The dashboard's reads: the most requested page, at a few milliseconds of CPU (issue 13).

Access follows who the user is now: every request reads the user's memberships first, and the
applications and grants shown belong to organisations in that list, under the same rules as
`ApplicationQuerySet.visible_to` (principal investigator, team member or owner) and
`GrantQuerySet.of_member` (principal investigator or team member).
tests/portal/test_dashboard_reads.py holds both to those querysets for every user of generated
data. Someone with no membership costs one query.

Hand-written SQL: building the same queries with the ORM (membership `Exists` subqueries, usage
sums grouped over three joined tables) cost more CPU than PostgreSQL spends answering them, and
this page's CPU is what limits how many requests a worker serves. Every column not selected here
is deferred (read on first use), never a silent default; the organisations come complete from
the membership query.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import prefetch_related_objects

from allocations.models import Grant
from allocations.services.usage import usage_summary
from portal.models import Application, Call, Membership, Organisation

DB = "default"
APPLICATIONS_SHOWN = 10
GRANTS_SHOWN = 20

MEMBERSHIPS_SQL = """
SELECT o.*, m.id AS membership_id, m.role AS membership_role, m.created_at AS membership_created_at
FROM portal_membership m JOIN portal_organisation o ON o.id = m.organisation_id
WHERE m.user_id = %s
ORDER BY o.name_en, o.id
"""

# visible_to: a current member who is the principal investigator, in the team, or an owner. The
# candidates come from three index lookups (a union of ids), then the organisation filter: as one
# WHERE with OR, PostgreSQL walked every application in submission order (20 ms at scale 1).
APPLICATIONS_SQL = """
SELECT a.id, a.title, a.status, a.call_id, a.organisation_id, a.principal_investigator_id,
       a.submitted_at, a.created_at, c.title_ko AS call_title_ko, c.title_en AS call_title_en
FROM portal_application a JOIN portal_call c ON c.id = a.call_id
WHERE a.id IN (SELECT id FROM portal_application WHERE principal_investigator_id = %(user)s
               UNION ALL SELECT application_id FROM portal_application_team WHERE user_id = %(user)s
               UNION ALL SELECT id FROM portal_application WHERE organisation_id = ANY(%(owned)s::bigint[]))
  AND a.organisation_id = ANY(%(organisations)s::bigint[])
ORDER BY a.submitted_at DESC NULLS FIRST, a.created_at DESC
LIMIT %(limit)s
"""

# of_member: a current member who is the grant's principal investigator or in its team; with
# the grant's use so far (the sums of `grants_with_usage`, over its usage hours only).
GRANTS_SQL = """
SELECT g.*, a.title AS application_title,
       u.used_minutes, u.used_samples, u.used_weighted, u.used_wh
FROM allocations_grant g
JOIN portal_application a ON a.id = g.application_id
LEFT JOIN LATERAL (
    SELECT sum(h.gpu_minutes) AS used_minutes,
           sum(h.sample_count) FILTER (WHERE h.avg_utilization IS NOT NULL) AS used_samples,
           sum(h.avg_utilization * h.sample_count) AS used_weighted,
           sum(h.energy_wh) AS used_wh
    FROM allocations_usagehour h WHERE h.grant_id = g.id
) u ON true
WHERE g.application_id IN (SELECT id FROM portal_application WHERE principal_investigator_id = %(user)s
                           UNION ALL SELECT application_id FROM portal_application_team WHERE user_id = %(user)s)
  AND g.organisation_id = ANY(%(organisations)s::bigint[])
ORDER BY g.created_at DESC, g.id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class Dashboard:
    memberships: list[Membership]
    applications: list[Application]
    grants: list[dict]  # {"grant": Grant, **usage_summary}, newest first


def _deferred(model, values: dict):
    """A model instance with only these fields loaded (the others are read on first use)."""
    return model.from_db(DB, list(values), list(values.values()))


def dashboard_memberships(user) -> list[Membership]:
    memberships = []
    for org in Organisation.objects.raw(MEMBERSHIPS_SQL, [user.pk]):
        membership = _deferred(
            Membership,
            {"id": org.membership_id, "user_id": user.pk, "organisation_id": org.pk, "role": org.membership_role,
             "created_at": org.membership_created_at},
        )  # fmt: skip
        membership.user, membership.organisation = user, org
        memberships.append(membership)
    return memberships


def dashboard_applications(user, memberships: list[Membership]) -> list[Application]:
    params = {
        "organisations": [m.organisation_id for m in memberships],
        "owned": [m.organisation_id for m in memberships if m.role == Membership.Role.OWNER],
        "user": user.pk,
        "limit": APPLICATIONS_SHOWN,
    }
    applications = list(Application.objects.raw(APPLICATIONS_SQL, params))
    for a in applications:
        a.call = _deferred(Call, {"id": a.call_id, "title_ko": a.call_title_ko, "title_en": a.call_title_en})
    return applications


def dashboard_grants(user, memberships: list[Membership]) -> list[dict]:
    """The user's grants with their use; each with its organisation (from the memberships), its
    application's title and its access intervals (the month's costs need them)."""
    organisations = {m.organisation_id: m.organisation for m in memberships}
    params = {"organisations": list(organisations), "user": user.pk, "limit": GRANTS_SHOWN}
    grants = list(Grant.objects.raw(GRANTS_SQL, params))
    for g in grants:
        g.organisation = organisations[g.organisation_id]
        g.application = _deferred(Application, {"id": g.application_id, "title": g.application_title})
    prefetch_related_objects(grants, "access_intervals")
    return [{"grant": g, **usage_summary(g.gpu_hours, g.__dict__)} for g in grants]


def dashboard_read(user) -> Dashboard:
    """What the dashboard shows, for who the user is at this request."""
    memberships = dashboard_memberships(user)
    if not memberships:  # both rules require a current membership
        return Dashboard(memberships=[], applications=[], grants=[])
    return Dashboard(
        memberships=memberships,
        applications=dashboard_applications(user, memberships),
        grants=dashboard_grants(user, memberships),
    )
