"""Statement periods: a UTC day + 1 h grace by default; the demo's few-minute periods bill the same."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from billing import services
from billing.ledger import ledger_violations
from billing.models import Invoice, InvoiceStatus, Statement
from billing.statements import period_floor, statements_build_due
from tests.billing.conftest import DAY1, H, deliver, make_deal

MIN = dt.timedelta(minutes=1)
DIVISORS_OF_A_DAY = [s for s in range(60, 86401, 60) if 86400 % s == 0]


@pytest.fixture
def demo_periods(settings):
    """What `gridx demo` sets: 5-minute statements, 1-minute grace, an invoice per period."""
    settings.BILLING_STATEMENT_SECONDS = 300
    settings.BILLING_GRACE_SECONDS = 60
    settings.BILLING_PERIOD = "statement"
    settings.BILLING_FEE_BPS = 1000
    settings.BILLING_SLA_BPS = 9900


def test_the_default_period_is_one_utc_day_stated_an_hour_after_it_ends(monkeypatch):
    for name in (
        "BILLING_STATEMENT_SECONDS",
        "BILLING_GRACE_SECONDS",
        "BILLING_PERIOD",
        "BILLING_TASK_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    import config.settings.billing as billing_settings

    defaults = importlib.reload(billing_settings)
    assert defaults.BILLING_STATEMENT_SECONDS == 86400
    assert defaults.BILLING_GRACE_SECONDS == 3600
    assert defaults.BILLING_PERIOD == "daily"
    assert defaults.BILLING_BEAT_SCHEDULE["billing-statements"]["schedule"] == 300.0


def test_a_period_that_does_not_divide_a_day_is_refused(monkeypatch):
    import config.settings.billing as billing_settings

    monkeypatch.setenv("BILLING_STATEMENT_SECONDS", "7000")
    with pytest.raises(ValueError, match="must divide a day"):
        importlib.reload(billing_settings)
    monkeypatch.delenv("BILLING_STATEMENT_SECONDS")
    importlib.reload(billing_settings)


@given(
    seconds=st.sampled_from(DIVISORS_OF_A_DAY),
    at=st.datetimes(
        min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(dt.UTC)
    ),
)
def test_periods_are_aligned_to_utc_midnight_and_hold_their_instant(seconds, at):
    with override_settings(BILLING_STATEMENT_SECONDS=seconds):
        start = period_floor(at)
    midnight = dt.datetime.combine(at.date(), dt.time(), tzinfo=dt.UTC)
    assert start <= at < start + dt.timedelta(seconds=seconds)
    assert (start - midnight).total_seconds() % seconds == 0


def test_with_the_default_period_nothing_is_stated_or_invoiced_until_the_day_and_its_grace_are_over(
    db, settings
):
    settings.BILLING_STATEMENT_SECONDS, settings.BILLING_GRACE_SECONDS, settings.BILLING_PERIOD = (
        86400,
        3600,
        "daily",
    )
    deal = make_deal(start=DAY1, hours=1, payment_cents=1200, seller_gpus=(1,))
    deliver(deal.gpus, DAY1, DAY1 + H)
    assert statements_build_due(now=DAY1 + 24 * H + 59 * MIN) == []
    made = statements_build_due(now=DAY1 + 25 * H)
    statement = Statement.objects.get(pk__in=made)
    assert (statement.period_start, statement.day, statement.charge_cents) == (DAY1, DAY1.date(), 1200)
    invoice = Invoice.objects.get(pk__in=services.invoices_open_due(now=DAY1 + 25 * H))
    assert (invoice.period_start, invoice.period_end) == (DAY1, DAY1 + 24 * H)


def test_short_periods_state_and_invoice_delivery_minutes_after_it_happens(db, demo_periods):
    # An hour's lease of 2 GPUs at 150 c/GPU-h: 5-minute periods of 25 c each once delivered.
    start = DAY1 + 10 * H
    deal = make_deal(start=start, hours=1, payment_cents=300, seller_gpus=(2,))
    deliver(deal.gpus, start, start + 20 * MIN)
    # 20 minutes delivered and a minute of grace: four periods are due, none of them later ones.
    made = statements_build_due(now=start + 21 * MIN)
    statements = list(Statement.objects.filter(pk__in=made).order_by("period_start"))
    assert [s.period_start for s in statements] == [start + k * 5 * MIN for k in range(4)]
    assert [s.charge_cents for s in statements] == [25, 25, 25, 25]
    assert all(s.delivered_gpu_seconds == s.leased_gpu_seconds == 2 * 300 for s in statements)
    # Each period gets its own invoice, its statement claimed, as soon as the period and grace are over.
    opened = services.invoices_open_due(now=start + 21 * MIN)
    invoices = list(Invoice.objects.filter(pk__in=opened).order_by("period_start"))
    assert [(i.period_start, i.period_end) for i in invoices] == [
        (start + k * 5 * MIN, start + (k + 1) * 5 * MIN) for k in range(4)
    ]
    assert all(i.status == InvoiceStatus.PENDING and i.amount_cents == 25 for i in invoices)
    assert ledger_violations() == []


def test_short_periods_bill_the_same_money_as_one_day(db, demo_periods, settings):
    start = DAY1 + 3 * H
    deal = make_deal(start=start, hours=2, payment_cents=1001, seller_gpus=(1,))
    deliver(deal.gpus, start, start + 90 * MIN)  # the last half hour is not delivered
    statements_build_due(now=start + 3 * H)
    short = list(Statement.objects.filter(lease=deal.lease))
    assert len(short) == 24  # two hours of 5-minute periods, the undelivered ones at zero
    delivered = sum(s.delivered_gpu_seconds for s in short)
    assert delivered == 90 * 60
    # Each period is rounded on its own, so the total may differ from one day's by under a cent per period.
    whole_day_charge = round(1001 * 90 / 120)
    assert abs(sum(s.charge_cents for s in short) - whole_day_charge) <= len(short) // 2
    assert ledger_violations() == []


def test_a_look_back_in_seconds_leaves_older_periods_alone(db, demo_periods, settings):
    settings.BILLING_ADJUSTMENT_SECONDS = 600
    start = DAY1 + 5 * H
    deal = make_deal(start=start, hours=1, payment_cents=300, seller_gpus=(2,))
    deliver(deal.gpus, start, start + H)
    # An hour after the lease: only the periods of the last 10 minutes before the due point are looked at.
    made = statements_build_due(now=start + 2 * H + MIN)
    assert made == []
    made = statements_build_due(now=start + H + 5 * MIN)
    periods = sorted(Statement.objects.filter(pk__in=made).values_list("period_start", flat=True))
    assert periods == [start + 50 * MIN, start + 55 * MIN]
