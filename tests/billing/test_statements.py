"""Statements: verified GPU-seconds priced by the lease, credits below the SLA, final once posted."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction

from billing.ledger import ledger_violations
from billing.models import Account, AccountKind, Statement, StatementKind
from billing.statements import statement_build, statements_build_due
from billing.tasks import statements_build_task
from tests.billing.conftest import DAY1, H, deliver, make_deal

AFTER_GRACE = DAY1 + dt.timedelta(days=1, hours=1)


def balance(team, kind: str) -> int:
    account = Account.objects.filter(team=team, kind=kind).first()
    return account.normal_balance_cents if account else 0


def platform(kind: str) -> int:
    account = Account.objects.filter(team__isnull=True, kind=kind).first()
    return account.normal_balance_cents if account else 0


def half_up(value: Fraction) -> int:
    return int((Decimal(value.numerator) / Decimal(value.denominator)).quantize(Decimal(1), ROUND_HALF_UP))


@pytest.fixture
def fee_10pct(settings):
    settings.BILLING_FEE_BPS = 1000
    settings.BILLING_SLA_BPS = 9900
    settings.BILLING_SLA_CREDIT_MULTIPLE_BPS = 10000
    settings.BILLING_GRACE_SECONDS = 3600
    settings.METERING_GRACE_S = 900


def test_a_fully_delivered_day_charges_the_lease_price_and_pays_the_seller_less_the_fee(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=9600, seller_gpus=(2,))  # 200c per GPU-hour
    deliver(deal.gpus, DAY1, DAY1 + 24 * H)
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    assert (statement.charge_cents, statement.credit_cents, statement.fee_cents) == (9600, 0, 960)
    assert statement.delivered_gpu_seconds == statement.leased_gpu_seconds == 2 * 24 * 3600
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 9600
    assert balance(deal.sellers[0], AccountKind.PAYABLE) == 8640
    assert platform(AccountKind.FEES) == 960
    assert ledger_violations() == []


def test_a_day_is_not_stated_before_its_grace_has_passed(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=9600)
    too_early = DAY1 + dt.timedelta(days=1, minutes=59)
    assert statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=too_early) is None
    assert Statement.objects.count() == 0


def test_undelivered_time_is_not_charged_and_below_the_sla_the_buyer_is_credited(db, settings, fee_10pct):
    settings.BILLING_SLA_CREDIT_MULTIPLE_BPS = 5000  # half the undelivered value
    deal = make_deal(start=DAY1, hours=10, payment_cents=10_000, seller_gpus=(1,))  # 1000c per GPU-hour
    deliver(deal.gpus, DAY1, DAY1 + 8 * H)  # 80% delivered
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    assert statement.charge_cents == 8000
    assert statement.credit_cents == 1000  # 2 undelivered hours x 1000c x 0.5
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 7000
    assert balance(deal.sellers[0], AccountKind.PAYABLE) == 7200
    assert platform(AccountKind.CREDITS) == 1000


def test_delivery_at_the_sla_threshold_earns_no_credit(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=100, payment_cents=100_000, seller_gpus=(1,))
    deliver(deal.gpus, DAY1, DAY1 + 24 * H - dt.timedelta(seconds=864))  # exactly 99% of the day
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    assert statement.delivered_gpu_seconds * 100 == statement.leased_gpu_seconds * 99
    assert statement.credit_cents == 0


def test_a_credit_never_exceeds_the_day_s_charge(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=2400, seller_gpus=(1,))
    deliver(deal.gpus, DAY1, DAY1 + 6 * H)
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    assert statement.charge_cents == 600
    assert statement.credit_cents == 600
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 0


def test_the_charge_is_rounded_once_half_up_from_the_exact_price(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=7, payment_cents=1001, seller_gpus=(3,))
    delivered_until = DAY1 + dt.timedelta(hours=2, minutes=13, seconds=7)
    deliver(deal.gpus, DAY1, delivered_until)
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    seconds = 3 * int((delivered_until - DAY1).total_seconds())
    exact = Fraction(seconds * 1001, 3 * 7 * 3600)
    assert statement.charge_cents == half_up(exact)
    assert statement.fee_cents == half_up(Fraction(statement.charge_cents * 1000, 10_000))


def test_the_sellers_share_the_charge_less_the_fee_by_their_sources_to_the_cent(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=10_001, seller_gpus=(1, 2))
    deliver(deal.gpus, DAY1, DAY1 + 24 * H)
    statement = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    shares = {p.seller_id: p.payable_cents for p in statement.payables.all()}
    assert sum(shares.values()) == statement.charge_cents - statement.fee_cents
    small, big = shares[deal.sellers[0].pk], shares[deal.sellers[1].pk]
    assert abs(2 * small - big) <= 2


def test_building_a_day_twice_states_it_once(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=9600)
    deliver(deal.gpus, DAY1, DAY1 + 24 * H)
    first = statements_build_due(now=AFTER_GRACE)
    second = statements_build_due(now=AFTER_GRACE + H)
    assert len(first) == 1 and second == []
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 9600


def test_a_lease_over_two_days_gets_one_statement_per_day(db, fee_10pct):
    deal = make_deal(start=DAY1 + 20 * H, hours=8, payment_cents=1600, seller_gpus=(1,))
    deliver(deal.gpus, DAY1 + 20 * H, DAY1 + 28 * H)
    made = statements_build_due(now=DAY1 + dt.timedelta(days=2, hours=2))
    days = sorted(Statement.objects.filter(pk__in=made).values_list("day", "charge_cents"))
    assert days == [(DAY1.date(), 800), ((DAY1 + 24 * H).date(), 800)]


def test_late_evidence_makes_an_adjustment_statement_and_never_edits_the_first(db, fee_10pct):
    deal = make_deal(start=DAY1, hours=24, payment_cents=2400, seller_gpus=(1,))
    deliver(deal.gpus, DAY1, DAY1 + 20 * H)
    first = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    deliver(deal.gpus, DAY1 + 20 * H, DAY1 + 24 * H)  # late reports arrive
    adjustment = statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE + 3 * H)
    first.refresh_from_db()
    assert (first.charge_cents, first.credit_cents) == (2000, 400)
    assert adjustment.kind == StatementKind.ADJUSTMENT and adjustment.seq == 1
    assert (adjustment.charge_cents, adjustment.credit_cents) == (400, -400)
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 2400
    assert statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE + 4 * H) is None
    assert ledger_violations() == []


@pytest.mark.parametrize(
    "sql",
    ["UPDATE billing_statement SET charge_cents = charge_cents + 1", "DELETE FROM billing_statement"],
)
def test_postgres_refuses_to_edit_or_delete_a_posted_statement(db, fee_10pct, sql):
    deal = make_deal(start=DAY1, hours=24, payment_cents=2400)
    deliver(deal.gpus, DAY1, DAY1 + 24 * H)
    statement_build(lease_id=deal.lease.pk, day=DAY1.date(), now=AFTER_GRACE)
    with pytest.raises(DatabaseError, match="final"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert Statement.objects.get().charge_cents == 2400


def test_the_beat_runs_the_statement_task_and_running_it_twice_changes_nothing(db, fee_10pct, settings):
    assert settings.CELERY_BEAT_SCHEDULE["billing-statements"]["task"] == statements_build_task.name
    deal = make_deal(start=DAY1, hours=24, payment_cents=2400)
    deliver(deal.gpus, DAY1, DAY1 + 24 * H)
    with time_machine.travel(AFTER_GRACE, tick=False):
        assert statements_build_task.apply().get() == 1
        assert statements_build_task.apply().get() == 0
    assert balance(deal.buyer, AccountKind.RECEIVABLE) == 2400
