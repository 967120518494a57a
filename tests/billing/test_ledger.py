"""The billing rule, as a table of cases whose totals were worked out by hand (the comment of each
case shows the arithmetic). Month: November 2026, Seoul time. Startup rate for H100: ₩3,000 per
GPU-hour, ₩3,600 from 16 November; for A100 ₩3,030 (a rate that makes half won)."""

from datetime import date, datetime

import pytest

from billing.ledger import (
    BILLABLE,
    PREPAID,
    SEOUL,
    SUBSIDISED,
    GrantUsage,
    Interval,
    LedgerError,
    Pack,
    month_bounds,
    statement,
    vat_of,
    won,
)

RATES = {"H100-80GB": [(date(2026, 1, 1), 3000), (date(2026, 11, 16), 3600)], "A100-80GB": [(date(2026, 1, 1), 3030)]}
START, END = month_bounds(date(2026, 11, 1))


def at(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 11) -> datetime:
    year = 2026 if month <= 12 else 2027
    return datetime(year, (month - 1) % 12 + 1, day, hour, minute, second, tzinfo=SEOUL)


def pack(minutes, *, pid=1, paid=None, model="H100-80GB"):
    return Pack(pid, model, paid or at(1, 0, month=10), minutes)


def usage(gid=1, *, hours=0, used=0, copay=20, model="H100-80GB", intervals=()):
    return GrantUsage(gid, model, copay, hours * 60, used * 60, tuple(Interval(*i) for i in intervals))


CASES = {
    # 24 GPU-h; 10 h subsidy left: 10 h x 3,000 x 20 % = 6,000; 14 h x 3,000 = 42,000.
    "subsidy partly used, co-payment 20 %": (
        [usage(hours=100, used=90, intervals=[(at(2, 9), at(2, 21), 2)])],
        [],
        [(1, SUBSIDISED, 600, 3000, 6000), (1, BILLABLE, 840, 3000, 42000)],
        (48000, 4800, 52800),
    ),
    # subsidy spent; 8 h: 5 h from the pack at ₩0, 3 h x 3,000 = 9,000.
    "prepaid pack after the subsidy": (
        [usage(hours=10, used=10, intervals=[(at(3, 0), at(3, 8), 1)])],
        [pack(300)],
        [(1, PREPAID, 300, 3000, 0), (1, BILLABLE, 180, 3000, 9000)],
        (9000, 900, 9900),
    ),
    # 15 Nov 22:00 - 16 Nov 02:00: 2 h x 3,000 = 6,000 and 2 h x 3,600 = 7,200.
    "rate change at midnight Seoul splits the line": (
        [usage(intervals=[(at(15, 22), at(16, 2), 1)])],
        [],
        [(1, BILLABLE, 120, 3000, 6000), (1, BILLABLE, 120, 3600, 7200)],
        (13200, 1320, 14520),
    ),
    # 3 h subsidy left, 2 GPUs 15 Nov 23:00 - 16 Nov 01:00 (240 GPU-min): 120 min x 3,000 x 20 % = 1,200;
    # after midnight 60 min x 3,600 x 20 % = 720 and 60 min x 3,600 = 3,600.
    "subsidy runs out after a rate change": (
        [usage(hours=3, intervals=[(at(15, 23), at(16, 1), 2)])],
        [],
        [
            (1, SUBSIDISED, 120, 3000, 1200),
            (1, SUBSIDISED, 60, 3600, 720),
            (1, BILLABLE, 60, 3600, 3600),
        ],
        (5520, 552, 6072),
    ),
    # Only the November parts count: 31 Oct 23:00 - 1 Nov 01:00 gives 60 min at 3,000 = 3,000;
    # 30 Nov 23:30 - 1 Dec 00:30 gives 30 min at 3,600 = 1,800.
    "intervals across the month's boundaries": (
        [usage(intervals=[(at(31, 23, month=10), at(1, 1), 1), (at(30, 23, 30), at(1, 0, 30, month=12), 1)])],
        [],
        [(1, BILLABLE, 60, 3000, 3000), (1, BILLABLE, 30, 3600, 1800)],
        (4800, 480, 5280),
    ),
    # Exactly the subsidy left (60 min): 60 x 3,000 x 20 % / 60 = 600, no billable line.
    "usage equal to the subsidy left": (
        [usage(hours=1, intervals=[(at(5, 10), at(5, 11), 1)])],
        [],
        [(1, SUBSIDISED, 60, 3000, 600)],
        (600, 60, 660),
    ),
    # 1 min 59 s counts as 1 GPU-minute: 3,030 / 60 = 50.5 → 51 (half-up, not to even); VAT 5.1 → 5.
    "half a won rounds up": (
        [usage(model="A100-80GB", intervals=[(at(7, 10), at(7, 10, 1, 59), 1)])],
        [],
        [(1, BILLABLE, 1, 3030, 51)],
        (51, 5, 56),
    ),
    # A 2 h pack shared in the order the time was used: grant 2 (9:00-10:00) takes 60 min first,
    # grant 1 (12:00-13:30) the other 60 and pays 30 min x 3,000 = 1,500.
    "one pack drawn by two grants in time order, not id order": (
        [
            usage(2, intervals=[(at(9, 9), at(9, 10), 1)]),
            usage(1, intervals=[(at(9, 12), at(9, 13, 30), 1)]),
        ],
        [pack(120)],
        [(1, PREPAID, 60, 3000, 0), (1, BILLABLE, 30, 3000, 1500), (2, PREPAID, 60, 3000, 0)],
        (1500, 150, 1650),
    ),
    # An open interval runs to the end of the period: 30 Nov 20:00 - 1 Dec 00:00 = 4 h x 3,600, 0 % co-payment.
    "open interval, academic co-payment 0 %": (
        [usage(hours=1000, copay=0, intervals=[(at(30, 20), None, 1)])],
        [],
        [(1, SUBSIDISED, 240, 3600, 0)],
        (0, 0, 0),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_the_billing_rule_matches_the_hand_worked_case(name):
    grants, packs, expected_lines, (supply, vat, total) = CASES[name]
    result = statement(grants=grants, rates=RATES, packs=packs, start=START, end=END)
    got = [(x.grant_id, x.kind, x.gpu_minutes, x.krw_per_gpu_hour, x.amount_krw) for x in result.lines]
    assert got == expected_lines
    assert (result.supply_krw, vat_of(result.supply_krw, 10), result.supply_krw + vat_of(result.supply_krw, 10)) == (
        supply,
        vat,
        total,
    )


# Prepaid packs follow time. Lines: (grant, kind, GPU-minutes, amount, pack drawn). Packs are
# bought in October unless said; no subsidy unless said.
PACK_CASES = {
    # 10 Nov 10:00-14:00 (240 min), a 2 h pack bought at 12:00: 10:00-12:00 billable, 120 min x
    # 3,000 = 6,000; 12:00-14:00 from the pack.
    "a pack bought mid-month covers only the time after its purchase": (
        [usage(intervals=[(at(10, 10), at(10, 14), 1)])],
        [pack(120, pid=1, paid=at(10, 12))],
        [(1, BILLABLE, 120, 6000, None), (1, PREPAID, 120, 0, 1)],
        (6000, 600, 6600),
    ),
    # Pack 7 bought 1 Oct, pack 3 bought 5 Oct, 60 min each; 90 min used: 60 from 7 (the oldest),
    # 30 from 3; nothing to pay.
    "the oldest pack is drawn first, whatever its id": (
        [usage(intervals=[(at(2, 9), at(2, 10, 30), 1)])],
        [pack(60, pid=3, paid=at(5, 0, month=10)), pack(60, pid=7, paid=at(1, 0, month=10))],
        [(1, PREPAID, 60, 0, 7), (1, PREPAID, 30, 0, 3)],
        (0, 0, 0),
    ),
    # Grant 2 (1 GPU) 08:00-12:00, grant 1 (2 GPUs) 10:00-11:00, one 3 h pack. 08:00-10:00: grant 2
    # draws 120 (60 left). 10:00-11:00 both run: grant 1 first (id order inside the same minutes)
    # takes the last 60, its other 60 billable = 3,000; grant 2's 60 billable. 11:00-12:00 grant 2
    # 60 billable. Grant 2 billable 120 x 3,000 / 60 = 6,000. Supply 9,000.
    "grants running at once share a pack minute by minute": (
        [usage(2, intervals=[(at(3, 8), at(3, 12), 1)]), usage(1, intervals=[(at(3, 10), at(3, 11), 2)])],
        [pack(180)],
        [
            (1, PREPAID, 60, 0, 1),
            (1, BILLABLE, 60, 3000, None),
            (2, PREPAID, 120, 0, 1),
            (2, BILLABLE, 120, 6000, None),
        ],
        (9000, 900, 9900),
    ),
    # 1 h subsidy left at 20 %, 3 h used, a 1 h pack: 60 min x 3,000 x 20 % = 600; 60 from the pack;
    # 60 billable = 3,000. Supply 3,600.
    "the subsidy first, then the pack, then billable": (
        [usage(hours=1, intervals=[(at(4, 9), at(4, 12), 1)])],
        [pack(60)],
        [(1, SUBSIDISED, 60, 600, None), (1, PREPAID, 60, 0, 1), (1, BILLABLE, 60, 3000, None)],
        (3600, 360, 3960),
    ),
    # An A100 pack is not drawn for H100 time: 60 min x 3,000 = 3,000.
    "a pack of another GPU model is not drawn": (
        [usage(intervals=[(at(4, 9), at(4, 10), 1)])],
        [pack(600, model="A100-80GB")],
        [(1, BILLABLE, 60, 3000, None)],
        (3000, 300, 3300),
    ),
    # Bought on 20 Nov, after the only use (2 Nov): it covers nothing of it.
    "a pack bought after the use covers none of it": (
        [usage(intervals=[(at(2, 9), at(2, 10), 1)])],
        [pack(600, paid=at(20, 0))],
        [(1, BILLABLE, 60, 3000, None)],
        (3000, 300, 3300),
    ),
    # 15 Nov 23:00 - 16 Nov 01:00 with a pack bought 16 Nov 00:30: 23:00-00:00 at 3,000 = 3,000;
    # 00:00-00:30 at 3,600 = 1,800; 00:30-01:00 from the pack.
    "a pack bought just after a rate change": (
        [usage(intervals=[(at(15, 23), at(16, 1), 1)])],
        [pack(600, paid=at(16, 0, 30))],
        [(1, BILLABLE, 60, 3000, None), (1, BILLABLE, 30, 1800, None), (1, PREPAID, 30, 0, 1)],
        (4800, 480, 5280),
    ),
}


@pytest.mark.parametrize("name", list(PACK_CASES))
def test_prepaid_packs_are_drawn_in_time_order_oldest_first(name):
    grants, packs, expected_lines, (supply, vat, total) = PACK_CASES[name]
    result = statement(grants=grants, rates=RATES, packs=packs, start=START, end=END)
    got = [(x.grant_id, x.kind, x.gpu_minutes, x.amount_krw, x.pack_id) for x in result.lines]
    assert got == expected_lines
    assert (result.supply_krw, vat_of(result.supply_krw, 10)) == (supply, vat)
    assert supply + vat == total


def test_vat_rounds_half_up_on_the_invoice():
    assert (vat_of(105, 10), vat_of(104, 10), won(__import__("decimal").Decimal("2.5"))) == (11, 10, 3)


def test_usage_without_a_published_rate_is_an_error_not_free():
    grants = [usage(model="B200-192GB", intervals=[(at(2, 9), at(2, 10), 1)])]
    with pytest.raises(LedgerError):
        statement(grants=grants, rates=RATES, packs=[], start=START, end=END)


def test_a_month_is_bounded_in_seoul_time():
    start, end = month_bounds(date(2026, 12, 5))
    assert (start.isoformat(), end.isoformat()) == ("2026-12-01T00:00:00+09:00", "2027-01-01T00:00:00+09:00")
