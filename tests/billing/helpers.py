"""Billing fixtures built from rows (no node needed): an organisation with a grant whose access
intervals are written as the lifecycle would have written them."""

from __future__ import annotations

from datetime import date, datetime
from itertools import count

from django.db.backends.postgresql.psycopg_any import DateTimeTZRange

from allocations.models import AccessInterval, Assignment, Gpu, Grant, Node
from billing.ledger import SEOUL
from billing.models import HourPack, Rate
from billing.policy import past_subsidy_for_kind
from portal.models import Membership, Organisation
from tests.factories import ApplicationFactory, CallFactory, MembershipFactory, OrganisationFactory, UserFactory

_n = count(1)
# Valid business registration numbers (checksum), one per startup.
BRNS = ["1208147521", "2208162517", "1018200027", "2148618758", "1068126587", "1078155843"]


def at(day: int, hour: int = 0, minute: int = 0, *, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SEOUL)


def rate_card(tier: str = "startup", krw: int = 3000, *, model: str = "H100-80GB", since: date = date(2026, 1, 1)):
    return Rate.objects.create(gpu_model=model, price_tier=tier, krw_per_gpu_hour=krw, effective_from=since)


def startup(**extra) -> tuple[Organisation, object]:
    """A startup with an owner (returned) and a billing member (billing@…)."""
    n = next(_n)
    values = {"kind": Organisation.Kind.STARTUP, "business_registration_number": BRNS[n % len(BRNS)], **extra}
    org = OrganisationFactory(**values)
    owner = MembershipFactory(
        organisation=org, role=Membership.Role.OWNER, user=UserFactory(email=f"owner{n}@s.kr")
    ).user
    MembershipFactory(organisation=org, role=Membership.Role.BILLING, user=UserFactory(email=f"billing{n}@s.kr"))
    return org, owner


def grant_for(
    org: Organisation,
    *,
    intervals=(),
    copay: int = 20,
    hours: int = 100,
    gpus: int = 1,
    model: str = "H100-80GB",
    status: str = Grant.Status.ACTIVE,
    node: bool = False,
    past_subsidy: str | None = None,
) -> Grant:
    """A grant under a call of its own; `past_subsidy` defaults to the rule by organisation kind
    that the data migration gave existing calls (grace for companies, suspend otherwise)."""
    pi = Membership.objects.filter(organisation=org, role=Membership.Role.OWNER).first().user
    past_subsidy = past_subsidy or past_subsidy_for_kind(org.kind)
    call = CallFactory(copay_percent=copay, eligible_kinds=[org.kind], past_subsidy=past_subsidy)
    app = ApplicationFactory(call=call, organisation=org, principal_investigator=pi, gpu_count=gpus, gpu_hours=hours)
    grant = Grant.objects.create(
        organisation=org,
        application=app,
        gpu_model=model,
        gpu_count=gpus,
        gpu_hours=hours,
        copay_percent=copay,
        past_subsidy=past_subsidy,
        starts_on=date(2026, 1, 1),
        ends_on=date(2030, 1, 1),
        status=status,
    )
    for opened, closed in intervals:
        AccessInterval.objects.create(grant=grant, gpu_count=gpus, opened_at=opened, closed_at=closed)
    if node:
        k = next(_n)
        n = Node.objects.create(hostname=f"gpu{k}.test", address="127.0.0.1", gpu_model=model)
        for i in range(gpus):
            gpu = Gpu.objects.create(node=n, index=i, uuid=f"GPU-{k}-{i}", model=model, memory_mib=81559)
            Assignment.objects.create(
                grant=grant, node=n, gpu=gpu, period=DateTimeTZRange(at(1, month=1), at(1, month=1, year=2030))
            )
    return grant


def hour_pack(organisation: Organisation, owner, *, hours: int = 10, krw_per_gpu_hour: int = 3000, **extra) -> HourPack:
    """An H100 hour pack priced as the portal prices it (supply, 10 % VAT, total); `extra` sets
    its state (status, paid_at, checkout_session_id...)."""
    supply = hours * krw_per_gpu_hour
    return HourPack.objects.create(
        organisation=organisation, gpu_model="H100-80GB", gpu_hours=hours, krw_per_gpu_hour=krw_per_gpu_hour,
        supply_krw=supply, vat_krw=supply // 10, total_krw=supply + supply // 10, bought_by=owner, **extra,
    )  # fmt: skip


def run_recording(call, outcomes: list[str], *, before=None) -> None:
    """Run `call` as a thread's body and append its outcome: "done", the PortalError's code, or
    the exception's repr; `before` (a barrier's wait) runs first. The thread's connection is
    closed afterwards (a transactional test's flush would otherwise wait for it)."""
    from django.db import connection

    from portal.errors import PortalError

    try:
        if before is not None:
            before()
        call()
        outcomes.append("done")
    except PortalError as exc:
        outcomes.append(exc.code)
    except BaseException as exc:  # noqa: BLE001 - any failure is an outcome to assert on
        outcomes.append(repr(exc))
    finally:
        connection.close()


def race(*calls) -> list[str]:
    """Run the calls at once (a barrier), each in its own thread and database connection; their
    outcomes as `run_recording` writes them, in the order they finished."""
    import threading

    barrier = threading.Barrier(len(calls))
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=run_recording, args=(c, outcomes), kwargs={"before": barrier.wait}) for c in calls
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes
