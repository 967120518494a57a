"""National-scale data for the benchmarks: deterministic (seeded), written with COPY.

At `--scale 1`: 5,007 organisations (the largest with 1,037 members), 30,000 users, 20,000
applications (331 awaiting review), 151,000 eligibility results, 26,000 reviews, 3,001 grants,
1,000 nodes with 8,000 GPUs and 22,000 provisioning tasks, plus the rows that go with them
(memberships and their audit rows, e-mail addresses, application events, assignments, node
accounts, unix ids, Jupyter sessions, node events, outbox messages). `--scale 0.1` is a tenth
of everything; `--nodes 7500` gives the 60,000-GPU fleet whatever the scale.

    DATABASE_URL=... .venv/bin/python benchmarks/generate.py --scale 1 [--seed 13] [--nodes N] [--pending N]

The database must be migrated and empty. The same seed and the same day give the same rows (dates
are relative to today so that calls are open when the pages are measured). Every user has one
precomputed password hash (DEMO_PASSWORD): nothing is hashed per row.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection, models, transaction  # noqa: E402

from allocations.models import (  # noqa: E402
    AccessInterval,
    Assignment,
    Gpu,
    Grant,
    JupyterSession,
    Node,
    NodeAccount,
    NodeEvent,
    ProvisioningTask,
    UnixId,
    UsageHour,
)
from portal.models import (  # noqa: E402
    Application,
    ApplicationEvent,
    Call,
    CallBudget,
    EligibilityResult,
    Membership,
    Organisation,
    OrganisationAuditLog,
    OrganisationDomain,
    OutboxMessage,
    Review,
    User,
)

# The counts of the issue at scale 1.
BASE = {
    "organisations": 5007,
    "largest_org_members": 1037,
    "users": 30000,
    "applications": 20000,
    "pending": 331,
    "largest_org_applications": 682,
    "eligibility_results": 151000,
    "reviews": 26000,
    "grants": 3001,
    "nodes": 1000,
    "tasks": 22000,
    "reviewers": 120,
}
BENCH_ADMIN_EMAIL = "bench-admin@centre.example.kr"
SCORES = ("merit", "feasibility", "national_priority", "resource_justification")


# -- GPU models: the one place that knows how a GPU model is stored ----------------------------
# GPU models are rows (allocations.GpuModel, code as primary key); the model columns hold the code.


def gpu_models() -> list[str]:
    """The GPU models the generated fleet and calls use: the codes of the GpuModel rows."""
    from allocations.models import GpuModel

    return list(GpuModel.objects.order_by("code").values_list("code", flat=True))


def gpu_model_value(model: str) -> str:
    """What a model column holds for `model`: its code (the GpuModel row's primary key)."""
    return model


def gpu_memory_mib(model: str) -> int:
    return {"A100-80GB": 81920, "H100-80GB": 81559, "H200-141GB": 143771, "B200-180GB": 183359}.get(model, 81920)


# -- COPY -------------------------------------------------------------------------------------


def copy_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """COPY rows (values in the order of `fields`, attribute names such as `user_id`) into the
    model's table; JSON values must already be strings. Returns the number of rows."""
    columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column) for f in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    n = 0
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def reset_sequences(*model_list: type[models.Model]) -> None:
    """Move each id sequence past the ids written with COPY, never back: setval is not undone by
    a rollback, so lowering a sequence (Django's sequence_reset_sql sets it to max(id)) would
    hand out ids again that earlier work already used (the query-count tests roll back)."""
    with connection.cursor() as cursor:
        for model in model_list:
            table, pk = model._meta.db_table, model._meta.pk.column
            cursor.execute(
                f"""SELECT setval(s::regclass, GREATEST(coalesce((SELECT max("{pk}") FROM "{table}"), 1),
                                                    coalesce(pg_sequence_last_value(s::regclass), 1)))
                    FROM pg_get_serial_sequence(%s, %s) AS s""",  # noqa: S608 - names from the models
                [table, pk],
            )


def tsrange(start: date, end: date) -> str:
    return f"[{start.isoformat()} 00:00:00+00,{end.isoformat()} 00:00:00+00)"


class Generator:
    def __init__(self, scale: float, seed: int, nodes: int | None, today: date, pending: int | None = None) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
        self.today = today
        self.now = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=9)
        self.n = {k: max(1, round(v * scale)) for k, v in BASE.items()}
        if pending is not None:  # applications awaiting review (drafts make room for them)
            self.n["pending"] = pending
        # At least two nodes of every model, so that tiny scales (the tests) have some of each.
        self.n["nodes"] = nodes or max(self.n["nodes"], 2 * len(gpu_models()))
        self.counts: dict[str, int] = {}

    def ago(self, days: float) -> datetime:
        return self.now - timedelta(days=days)

    def put(self, model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        self.counts[model._meta.label] = self.counts.get(model._meta.label, 0) + copy_rows(model, fields, rows)

    # -- people and organisations -----------------------------------------------------------

    def people(self) -> None:
        rng, n = self.rng, self.n
        password = make_password(settings.DEMO_PASSWORD)  # once, for everyone
        n_users, n_orgs = n["users"], n["organisations"]
        kinds = [k for k, _ in Organisation.Kind.choices]
        weights = [50, 15, 5, 15, 10, 5]
        self.org_kind = {i: (kinds[0] if i == 1 else rng.choices(kinds, weights)[0]) for i in range(1, n_orgs + 1)}
        self.put(
            Organisation,
            ["id", "kind", "name_ko", "name_en", "business_registration_number", "brn_status", "brn_document",
             "founded_on", "created_at"],
            (
                (i, self.org_kind[i], f"기관 {i:05d}", f"Organisation {i:05d}",
                 f"{1000000000 + i}" if self.org_kind[i] in Organisation.COMPANY_KINDS else None,
                 "verified" if self.org_kind[i] in Organisation.COMPANY_KINDS else "", "",
                 self.today - timedelta(days=rng.randint(100, 8000)), self.ago(rng.uniform(30, 900)))
                for i in range(1, n_orgs + 1)
            ),
        )  # fmt: skip
        self.put(
            OrganisationDomain,
            ["organisation_id", "domain", "verified", "created_at"],
            (
                (i, f"org{i}.ac.kr", True, self.ago(900))
                for i in range(1, n_orgs + 1)
                if self.org_kind[i] == "university"
            ),
        )
        # Users 1..R are the centre's reviewers; R+1 is the benchmark's admin; the rest are
        # researchers. The largest organisation (id 1) takes the first block of researchers.
        reviewers = n["reviewers"]
        self.reviewer_ids = list(range(1, reviewers + 1))
        self.admin_id = reviewers + 1
        first = reviewers + 2
        researchers = list(range(first, first + n_users - reviewers - 1))
        self.members: dict[int, list[int]] = {1: researchers[: n["largest_org_members"]]}
        rest = researchers[n["largest_org_members"] :]
        for j, uid in enumerate(rest):  # everyone belongs somewhere; sizes vary
            org = 2 + (j if j < n_orgs - 1 else rng.randrange(n_orgs - 1))
            self.members.setdefault(org, []).append(uid)
        for org in range(2, n_orgs + 1):
            self.members.setdefault(org, [])
        # Some researchers belong to a second organisation.
        for uid in rng.sample(rest, len(rest) // 20):
            org = rng.randrange(2, n_orgs + 1)
            if uid not in self.members[org]:
                self.members[org].append(uid)
        self.org_of_user = {}
        for org, uids in self.members.items():
            for uid in uids:
                self.org_of_user.setdefault(uid, org)

        def email(uid: int) -> str:
            if uid <= reviewers:
                return f"reviewer{uid}@centre.example.kr"
            if uid == self.admin_id:
                return BENCH_ADMIN_EMAIL
            return f"user{uid}@org{self.org_of_user.get(uid, 0)}.ac.kr"

        all_ids = range(1, first + len(researchers))
        self.put(
            User,
            ["id", "password", "is_superuser", "first_name", "last_name", "is_staff", "is_active", "date_joined",
             "email", "language"],
            ((uid, password, uid == self.admin_id, "", "", uid <= self.admin_id, True, self.ago(rng.uniform(1, 900)),
              email(uid), "ko") for uid in all_ids),
        )  # fmt: skip
        from allauth.account.models import EmailAddress

        self.put(
            EmailAddress, ["user_id", "email", "verified", "primary"], ((u, email(u), True, True) for u in all_ids)
        )
        rows, audit = [], []
        for org, uids in self.members.items():
            for k, uid in enumerate(uids):
                role = "owner" if k == 0 else ("billing" if k == 1 and len(uids) > 5 else "member")
                joined = self.ago(rng.uniform(1, 800))
                rows.append((uid, org, role, joined))
                audit.append((org, uid, uid, "member_joined", "", role, "", joined))
        self.put(Membership, ["user_id", "organisation_id", "role", "created_at"], rows)
        self.put(
            OrganisationAuditLog,
            ["organisation_id", "actor_id", "user_id", "action", "old_value", "new_value", "reason", "created_at"],
            audit,
        )
        self.user_count = len(all_ids)

    # -- calls, applications, eligibility, reviews --------------------------------------------

    def calls(self) -> None:
        models_ = gpu_models()
        rows, budgets = [], []
        # 3 open, 1 upcoming, 8 closed (most applications belong to closed calls).
        spec = [(-10, 20), (-5, 40), (-1, 60), (15, 45)] + [(-400 + 45 * k, -370 + 45 * k) for k in range(8)]
        for i, (opens, closes) in enumerate(spec, start=1):
            start = self.today + timedelta(days=max(closes, 0) + 10)
            rows.append((
                i, f"공모 {i}", f"Call {i}", "", "", self.now + timedelta(days=opens),
                self.now + timedelta(days=closes),
                "{university,research_institute,public_agency,startup,sme,enterprise}", 50000, 10 * (i % 3),
                start if closes > 0 else self.today - timedelta(days=200 - closes), (start if closes > 0 else
                self.today - timedelta(days=200 - closes)) + timedelta(days=365), None, self.ago(500 - i),
            ))  # fmt: skip
            for m in models_:
                budgets.append((i, gpu_model_value(m), 2_000_000))
        self.put(
            Call,
            ["id", "title_ko", "title_en", "description_ko", "description_en", "opens_at", "closes_at",
             "eligible_kinds", "cap_gpu_hours", "copay_percent", "allocation_starts_on", "allocation_ends_on",
             "max_startup_age_years", "created_at"],
            rows,
        )  # fmt: skip
        self.put(CallBudget, ["call_id", "gpu_model", "gpu_hours"], budgets)
        self.call_windows = {r[0]: (r[10], r[11]) for r in rows}
        self.open_calls = [1, 2, 3]

    def applications(self) -> None:
        rng, n = self.rng, self.n
        total = n["applications"]
        S = Application.Status
        n_pending, n_approved = n["pending"], n["grants"]
        n_rejected, n_withdrawn, n_returned = total * 22 // 100, total * 7 // 100, total * 2 // 100
        n_draft = total - n_pending - n_approved - n_rejected - n_withdrawn - n_returned
        statuses = (
            [S.SUBMITTED] * (n_pending // 2) + [S.IN_REVIEW] * (n_pending - n_pending // 2) + [S.APPROVED] * n_approved
            + [S.REJECTED] * n_rejected + [S.WITHDRAWN] * n_withdrawn + [S.RETURNED] * n_returned + [S.DRAFT] * n_draft
        )  # fmt: skip
        rng.shuffle(statuses)
        orgs_with_people = [o for o, m in self.members.items() if m and o != 1]
        big = n["largest_org_applications"]
        models_ = gpu_models()
        apps, team, events = [], [], []
        self.apps: dict[int, tuple] = {}
        for aid, status in enumerate(statuses, start=1):
            org = 1 if aid <= big else rng.choice(orgs_with_people)
            people = self.members[org]
            pi = rng.choice(people)
            closed = status not in (S.DRAFT, S.SUBMITTED, S.IN_REVIEW, S.RETURNED)
            call = rng.randint(4, 12) if closed or rng.random() < 0.5 else rng.choice(self.open_calls)
            if call == 4:  # the upcoming call takes no applications yet
                call = 5
            ws, _we = self.call_windows[call]
            created = self.ago(rng.uniform(5, 400))
            submitted = None if status == S.DRAFT else created + timedelta(days=rng.uniform(0, 3))
            decided = submitted + timedelta(days=rng.uniform(5, 30)) if closed and submitted else None
            count = rng.choice([1, 2, 4, 8])
            hours = count * rng.choice([500, 1000, 2000, 4000])
            model = gpu_model_value(rng.choice(models_))
            apps.append((
                aid, call, org, pi, f"Research project {aid}", "A research project.", "nlp", model, count, hours,
                ws, ws + timedelta(days=90), "Why we need the GPUs.", "PyTorch", "public", "", "", status,
                str(uuid.UUID(int=rng.getrandbits(128))), 1, created, decided or submitted or created, submitted,
                decided,
            ))  # fmt: skip
            self.apps[aid] = (status, org, pi, model, count, hours, ws, decided)
            for uid in rng.sample(people, min(len(people) - 1, rng.randint(0, 3))):
                if uid != pi:
                    team.append((aid, uid))
            chain = {
                S.DRAFT: [],
                S.SUBMITTED: [("draft", "submitted")],
                S.IN_REVIEW: [("draft", "submitted"), ("submitted", "in_review")],
                S.RETURNED: [("draft", "submitted"), ("submitted", "in_review"), ("in_review", "returned")],
                S.WITHDRAWN: [("draft", "submitted"), ("submitted", "withdrawn")],
                S.APPROVED: [("draft", "submitted"), ("submitted", "in_review"), ("in_review", "approved")],
                S.REJECTED: [("draft", "submitted"), ("submitted", "in_review"), ("in_review", "rejected")],
            }[status]
            for k, (old, new) in enumerate(chain):
                actor = pi if new in ("submitted", "withdrawn") else rng.choice(self.reviewer_ids)
                events.append((aid, actor, old, new, "", (submitted or created) + timedelta(days=k)))
        self.put(
            Application,
            ["id", "call_id", "organisation_id", "principal_investigator_id", "title", "abstract", "field",
             "gpu_model", "gpu_count", "gpu_hours", "starts_on", "ends_on", "justification", "software",
             "data_sensitivity", "attachment", "attachment_name", "status", "client_token", "version", "created_at",
             "updated_at", "submitted_at", "decided_at"],
            apps,
        )  # fmt: skip
        self.put(Application.team.through, ["application_id", "user_id"], team)
        self.put(
            ApplicationEvent, ["application_id", "actor_id", "old_status", "new_status", "reason", "created_at"], events
        )
        self._eligibility()
        self._reviews()

    def _eligibility(self) -> None:
        from portal.eligibility import RULES

        rules = [r.__name__ for r in RULES]
        evaluated = [aid for aid, a in self.apps.items() if a[0] != Application.Status.DRAFT]
        per_eval = len(rules)
        target = self.n["eligibility_results"]
        # Most applications were evaluated once; enough of them twice (edited and resubmitted)
        # to reach the count.
        twice = max(0, min(len(evaluated), target // per_eval - len(evaluated)))
        twice_set = set(self.rng.sample(evaluated, twice))

        def rows():
            for aid in evaluated:
                for ev in (1, 2) if aid in twice_set else (1,):
                    for rule in rules:
                        yield (aid, ev, rule, "pass", f"{rule}.ok", "{}", self.now)

        self.put(
            EligibilityResult,
            ["application_id", "evaluation", "rule", "outcome", "reason_code", "params", "created_at"],
            rows(),
        )

    def _reviews(self) -> None:
        rng = self.rng
        S = Application.Status
        reviewed = [aid for aid, a in self.apps.items() if a[0] in (S.IN_REVIEW, S.APPROVED, S.REJECTED, S.RETURNED)]
        per = -(-self.n["reviews"] // max(1, len(reviewed)))  # ceiling
        rows = []
        for aid in reviewed:
            for reviewer in rng.sample(self.reviewer_ids, min(per, len(self.reviewer_ids))):
                s = [rng.randint(1, 5) for _ in SCORES]
                rows.append((aid, reviewer, *s, rng.choice(["approve", "return", "reject"]), "", self.now, self.now))
                if len(rows) >= self.n["reviews"]:
                    break
            if len(rows) >= self.n["reviews"]:
                break
        self.put(
            Review,
            ["application_id", "reviewer_id", *SCORES, "recommendation", "comment", "created_at", "updated_at"],
            rows,
        )

    # -- fleet, grants, provisioning ----------------------------------------------------------

    def fleet(self) -> None:
        models_ = gpu_models()
        n_nodes = self.n["nodes"]
        self.node_model = {i: gpu_model_value(models_[i % len(models_)]) for i in range(1, n_nodes + 1)}
        self.put(
            Node,
            ["id", "hostname", "address", "ssh_port", "ssh_username", "host_key", "host_key_fingerprint", "gpu_model",
             "agent_path", "agent_version", "agent_sha256", "status", "status_reason", "status_source",
             "samples_token_sha256", "last_report_at", "created_at"],
            ((i, f"gpu-{i:05d}", f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}", 22, "gpprov",
              "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkHostKey", f"SHA256:bench{i}", self.node_model[i],
              "/usr/local/sbin/gpu-portal-agent", "1", "0" * 64, "online", "", "inventory", "", self.now, self.ago(600))
             for i in range(1, n_nodes + 1)),
        )  # fmt: skip
        self.put(
            Gpu,
            ["id", "node_id", "index", "uuid", "model", "memory_mib"],
            (((i - 1) * 8 + j + 1, i, j, f"GPU-{i:06d}-{j:02d}", self.node_model[i], gpu_memory_mib(self.node_model[i]))
             for i in range(1, n_nodes + 1) for j in range(8)),
        )  # fmt: skip
        self.put(
            NodeEvent,
            ["node_id", "source", "old_status", "new_status", "reason", "created_at"],
            ((i, "inventory", "offline", "online", "", self.ago(600)) for i in range(1, n_nodes + 1)),
        )

    def grants(self) -> None:
        rng = self.rng
        G = Grant.Status
        approved = [aid for aid, a in self.apps.items() if a[0] == Application.Status.APPROVED]
        status_pool = [G.ACTIVE] * 40 + [G.EXPIRED] * 35 + [G.PROVISIONING] * 5 + [G.PENDING] * 5
        status_pool += [G.SUSPENDED] * 5 + [G.REVOKED] * 10
        grants, assignments, unix, accounts, sessions, tasks, outbox = [], [], [], [], [], [], []
        free = {node: 0 for node in self.node_model}  # next free GPU index per node, by model
        by_model: dict[str, list[int]] = {}
        for node, model in self.node_model.items():
            by_model.setdefault(model, []).append(node)
        cursor = dict.fromkeys(by_model, 0)
        account_ids: dict[tuple[int, int], int] = {}
        uid_numbers = iter(range(settings.NODE_UNIX_ID_BASE, settings.NODE_UNIX_ID_BASE + 10**7))
        user_unix: set[int] = set()
        team_of: dict[int, list[int]] = {}
        for aid, uid in self._team_rows():
            team_of.setdefault(aid, []).append(uid)
        task_budget = self.n["tasks"]
        per_grant_tasks = max(1, task_budget // max(1, len(approved)))
        for gid, aid in enumerate(approved, start=1):
            _s, org, pi, model, count, hours, ws, decided = self.apps[aid]
            status = rng.choice(status_pool)
            starts = self.today - timedelta(days=rng.randint(1, 60)) if status != G.EXPIRED else ws
            ends = starts + timedelta(days=90)
            grants.append((gid, org, aid, model, count, hours, 0, starts, ends, status, "", "", decided or self.now))
            if status not in (G.ACTIVE, G.SUSPENDED, G.PROVISIONING):
                continue
            nodes = by_model[model]
            node = None
            while cursor[model] < len(nodes):
                cand = nodes[cursor[model]]
                if free[cand] + count <= 8:
                    node = cand
                    break
                cursor[model] += 1
            if node is None:
                continue  # the fleet of this model is full: the grant waits for capacity
            for j in range(free[node], free[node] + count):
                assignments.append((gid, node, (node - 1) * 8 + j + 1, tsrange(starts, ends), self.now))
            free[node] += count
            people = [pi, *team_of.get(aid, [])]
            for person in people:
                key = (person, node)
                if key not in account_ids:
                    account_ids[key] = len(account_ids) + 1
                    accounts.append((account_ids[key], person, node, f"{settings.NODE_ACCOUNT_PREFIX}{person}",
                                     "active", ends + timedelta(days=7), self.now))  # fmt: skip
                if person not in user_unix:
                    user_unix.add(person)
                    unix.append((person, next(uid_numbers), self.now))
                if status == G.ACTIVE:
                    sessions.append((gid, node, account_ids[key], f"/run/gpu-portal/jupyter/grant-{gid}.sock",
                                     uuid.UUID(int=rng.getrandbits(128)).hex, "running", self.now))  # fmt: skip
            kinds = ["grant-gpus", "ensure-account", "set-keys", "set-gpus", "start-jupyter"]
            for k in range(per_grant_tasks):
                kind = kinds[k % len(kinds)]
                person = people[k % len(people)]
                state = "succeeded" if status != G.PROVISIONING or k < per_grant_tasks // 2 else "queued"
                account = account_ids[(person, node)] if kind != "grant-gpus" else None
                payload = json.dumps({"grant": gid})
                tasks.append(
                    (node, gid, account, kind, payload, state, 1, "", None, self.now, self.now, self.now, None)
                )
            outbox.append(
                ("allocations.jobs.grant_provision_job", json.dumps([gid]), "default", self.now, self.now, 1, "")
            )
        self.put(
            Grant,
            ["id", "organisation_id", "application_id", "gpu_model", "gpu_count", "gpu_hours", "copay_percent",
             "starts_on", "ends_on", "status", "status_reason", "budget_override_reason", "created_at"],
            grants,
        )  # fmt: skip
        self.put(Assignment, ["grant_id", "node_id", "gpu_id", "period", "created_at"], assignments)
        self.put(UnixId, ["user_id", "number", "created_at"], unix)
        self.put(NodeAccount, ["id", "user_id", "node_id", "username", "state", "expires_on", "updated_at"], accounts)
        self.put(
            JupyterSession, ["grant_id", "node_id", "account_id", "socket_path", "token_nonce", "state", "updated_at"],
            sessions,
        )  # fmt: skip
        # Fill the task count of the issue: the remaining tasks are inventory reads of nodes.
        n_nodes = len(self.node_model)
        tasks += [
            (
                1 + k % n_nodes,
                None,
                None,
                "inventory",
                "{}",
                "succeeded",
                1,
                "",
                None,
                self.now,
                self.now,
                self.now,
                None,
            )
            for k in range(max(0, task_budget - len(tasks)))
        ]
        self.put(
            ProvisioningTask,
            ["node_id", "grant_id", "account_id", "kind", "payload", "state", "attempts", "last_error", "result",
             "created_at", "started_at", "finished_at", "next_attempt_at"],
            tasks,
        )  # fmt: skip
        outbox += [
            ("portal.jobs.send_application_status_email", json.dumps([aid]), "default", self.now, self.now, 1, "")
            for aid, a in self.apps.items()
            if a[0] != Application.Status.DRAFT
        ]
        self.put(OutboxMessage, ["func", "args", "queue", "created_at", "sent_at", "attempts", "last_error"], outbox)

    def metering(self) -> None:
        """What running grants have behind them: prices (every GPU model, every tier), an open
        access interval from the start of each active grant, and a usage hour for every hour
        since (the dashboard sums them; the month's costs price the intervals)."""
        from billing.models import Rate

        tiers = [t.value for t in Organisation.PriceTier]
        self.put(
            Rate,
            ["gpu_model", "price_tier", "krw_per_gpu_hour", "effective_from", "created_at"],
            [(gpu_model_value(m), t, 1000 + 500 * i + 250 * j, date(2020, 1, 1), self.now)
             for i, m in enumerate(gpu_models()) for j, t in enumerate(tiers)],
        )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, gpu_count, starts_on FROM allocations_grant WHERE status = 'active' ORDER BY id")
            active = cursor.fetchall()
        hour_now = self.now.replace(minute=0, second=0, microsecond=0)
        rng = self.rng
        intervals, hours = [], []
        for gid, count, starts in active:
            opened = datetime.combine(starts, datetime.min.time(), tzinfo=UTC)
            intervals.append((gid, count, opened, None, ""))
            hour = opened
            while hour < hour_now:
                util = rng.randint(0, 100)
                hours.append((gid, hour, count * 60, count * 60, float(util), round(count * (80 + 6 * util), 3)))
                hour += timedelta(hours=1)
        self.put(AccessInterval, ["grant_id", "gpu_count", "opened_at", "closed_at", "close_reason"], intervals)
        self.put(UsageHour, ["grant_id", "hour", "gpu_minutes", "sample_count", "avg_utilization", "energy_wh"], hours)

    def _team_rows(self) -> list[tuple[int, int]]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT application_id, user_id FROM {Application.team.through._meta.db_table}")  # noqa: S608
            return cursor.fetchall()

    def bench_admin(self) -> None:
        """The benchmark's operator: staff with an authenticator app (the admin requires one)."""
        from allauth.mfa.models import Authenticator

        self.put(
            Authenticator,
            ["user_id", "type", "data", "created_at"],
            [(self.admin_id, Authenticator.Type.TOTP, json.dumps({"secret": "bench"}), self.now)],
        )

    def run(self) -> dict[str, int]:
        with transaction.atomic():
            self.people()
            self.calls()
            self.applications()
            self.fleet()
            self.grants()
            self.metering()
            self.bench_admin()
            reset_sequences(
                User, Organisation, Call, Application, Node, Gpu, Grant, NodeAccount, Membership, OutboxMessage,
                ProvisioningTask, UnixId, JupyterSession, Assignment, Review, EligibilityResult, ApplicationEvent,
                OrganisationAuditLog, CallBudget, NodeEvent, OrganisationDomain, AccessInterval, UsageHour,
            )  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return self.counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1 = the issue's national scale; 0.1 = a tenth")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--nodes", type=int, default=None, help="nodes of 8 GPUs (default 1,000 × scale)")
    parser.add_argument("--pending", type=int, default=None, help="applications awaiting review (331 × scale)")
    args = parser.parse_args(argv)
    if User.objects.exists():
        sys.exit("generate.py fills an empty, migrated database; this one has users already")
    start = time.perf_counter()
    counts = Generator(args.scale, args.seed, args.nodes, date.today(), args.pending).run()
    for label, count in sorted(counts.items()):
        print(f"{label:32} {count:>9,}")
    print(f"generated {sum(counts.values()):,} rows in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
