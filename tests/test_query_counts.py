"""Every list and detail page costs a fixed number of queries, whatever the size of the
database: the same pages are requested on generated data of two sizes (benchmarks/generate.py,
five times apart) and must stay within one budget, never with more queries at the larger size. An N+1 (a query
per row) or a list read whole instead of a page fails here. Timings are measured by `make bench`,
never asserted in tests."""

from __future__ import annotations

from datetime import date

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from benchmarks.generate import Generator
from benchmarks.pages import pages, session_for
from portal.models import User

SMALL, LARGE = 0.001, 0.005

# Queries per page (session, user and the staff MFA check included).
BUDGET = {
    "reference: one indexed 20-row query": 1,
    "signed-in floor: base layout, empty body": 2,  # session, user
    "reference page, asked for with a session cookie": 3,  # session, user, the page's query
    # Session, user, memberships, applications, grants with their use, their access intervals, and
    # the month so far priced for those grants: prepaid hours bought, rates (portal/dashboard.py;
    # an organisation sharing prepaid hours between grants costs its whole statement instead);
    # + the charts (portal.services.dashboard): use per day, idle notices, node accounts, Jupyter
    # servers, owned organisations' grants, invoices due: 6, whatever the number of grants; the
    # last two only for an owner or billing member (in the small test data this researcher is one;
    # at scale 1 not: 12 queries)
    "/dashboard/": 14,
    "/applications/ (largest organisation's owner)": 4,
    "/applications/<id>/": 11,
    "/calls/": 5,
    # + use (usage hours), use per day (the charts), the month so far (ledger: 4), idle notices
    "/grants/<id>/ (most tasks)": 16,
    "/organisations/ (largest organisation's owner)": 3,
    "/organisations/<id>/ (largest organisation)": 8,
    "/keys/": 3,
    "/rates/": 2,
    # + the month so far of the organisation (grants, access intervals, rates, packs): the benchmark
    # data has running grants with open access intervals since issue 13's metering rows.
    "/billing/invoices/ (largest organisation's owner)": 9,
    "/billing/hour-packs/ (largest organisation's owner)": 5,
    # The page's call, organisation and applicant in one joined query (ApplicationChangeList).
    "admin review queue": 8,
    "admin application list, unfiltered": 8,
    "admin application change page": 13,  # + the organisation's unpaid invoices
    "admin decision page": 18,  # + the cost of the request and the award, the organisation's past use
    "admin grant list": 5,
    "admin grant change page": 8,
    "admin node list": 5,
    "admin node change page": 7,
    "admin provisioning tasks": 5,
    "admin invoices": 6,
    "admin usage hours": 5,  # no date hierarchy (two aggregates), one count (ScaledAdmin)
    "admin notices": 6,  # one count (ScaledAdmin)
    "admin organisation list": 5,
    # Its latest members and audit rows: one query each (read-only tables, not inline forms).
    "admin organisation change page": 7,
    "admin memberships of the largest organisation": 5,
    "admin audit log of the largest organisation": 5,
    "admin user list": 6,
    "admin audit log": 5,
    "admin review list": 6,
    "admin outbox": 7,
    "admin node accounts": 5,
    "admin Jupyter sessions": 5,
    "admin node operations": 5,
    "admin SSH keys": 5,
    "admin e-mail domains": 5,
    "admin invitations": 5,
    "admin calls": 5,
    "admin rates": 8,
}


def measure(client) -> dict[str, int]:
    """Page name → number of queries of one request (after a first request that warms caches)."""
    counts = {}
    for page in pages():
        client.cookies.clear()
        if page.user_id:
            user = User.objects.get(pk=page.user_id)
            client.cookies[settings.SESSION_COOKIE_NAME] = session_for(user, staff=page.staff)
        assert client.get(page.path).status_code == 200, page.path
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(page.path)
        assert response.status_code == 200, page.path
        counts[page.name] = len(ctx.captured_queries)
    return counts


@pytest.fixture
def bench_urls(settings):
    settings.ROOT_URLCONF = "benchmarks.urls"  # the reference page beside the portal's


def generated(scale: float) -> None:
    Generator(scale, seed=13, nodes=None, today=date.today()).run()


@pytest.mark.parametrize("scale", [SMALL, LARGE])
def test_every_page_stays_within_its_query_budget(db, client, bench_urls, scale, django_assert_max_num_queries):
    generated(scale)
    for page in pages():
        client.cookies.clear()
        if page.user_id:
            user = User.objects.get(pk=page.user_id)
            client.cookies[settings.SESSION_COOKIE_NAME] = session_for(user, staff=page.staff)
        client.get(page.path)
        with django_assert_max_num_queries(BUDGET[page.name], info=page.name):
            assert client.get(page.path).status_code == 200, page.path


def test_no_page_needs_more_queries_when_the_database_is_five_times_larger(db, client, bench_urls):
    counts = {}
    for scale in (SMALL, LARGE):
        with transaction.atomic():
            generated(scale)
            counts[scale] = measure(client)
            transaction.set_rollback(True)
    # More rows must never mean more queries (a page may take a branch with one query fewer).
    grown = {name: (counts[SMALL][name], n) for name, n in counts[LARGE].items() if n > counts[SMALL][name]}
    assert grown == {}
    assert set(counts[LARGE]) == set(BUDGET)  # every measured page has a budget here
