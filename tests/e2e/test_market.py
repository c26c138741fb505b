"""The public market page in a browser: countdown, charts with data, a round's report, phone width."""

from __future__ import annotations

from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import ensure_gpu_catalogue
from tests.e2e.conftest import shot
from tests.marketplace.test_web_market import seed_market

CHART_POINTS = """id => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart ? chart.data.datasets.map(d => d.data.length) : null;
}"""


def seeded(**kwargs):
    ensure_gpu_catalogue()
    # Prices are drawn around now, so the seed uses the real clock (the browser's is the same).
    now = timezone.now().replace(second=0, microsecond=0)
    return seed_market(now=now, **kwargs)


def test_the_market_charts_render_with_data(page, db):
    seeded(rounds=6, slots=6)
    page.goto("/")
    expect(page.locator(".countdown")).to_contain_text(" s")  # the live countdown ticks
    page.wait_for_function("window.Chart && Chart.getChart(document.getElementById('price-chart'))")
    prices = page.evaluate(CHART_POINTS, "price-chart")
    assert len(prices) == 2 and all(n > 0 for n in prices)  # two (model, cluster) series
    assert page.evaluate(CHART_POINTS, "hours-chart") == [6]  # six rounds
    assert page.evaluate(CHART_POINTS, "supply-chart")[0] == 7  # seven days
    # Filtering by model redraws the price chart from the JSON view, one series left.
    page.get_by_label("GPU model", exact=True).select_option("H100-SXM-80GB")
    page.wait_for_function(
        "Chart.getChart(document.getElementById('price-chart')).data.datasets.length === 1"
    )
    assert "model=H100-SXM-80GB" in page.url
    shot(page, "market")


def test_a_round_report_explains_how_to_verify(page, db):
    rounds = seeded(rounds=2)
    page.goto("/")
    page.locator("table.rounds").get_by_role("link", name=str(rounds[-1].number), exact=True).click()
    expect(page.get_by_role("heading", name="How to verify this round")).to_be_visible()
    expect(page.locator("table.report")).to_contain_text(rounds[-1].report_sha256)
    shot(page, "round-report")


def test_the_empty_market_reads_well_and_works_without_data(page, db):
    ensure_gpu_catalogue()
    page.goto("/")
    expect(page.get_by_text("No round has cleared yet", exact=False).first).to_be_visible()
    assert page.locator("#hours-chart").count() == 0


def test_the_market_fits_a_phone(phone_page, db):
    seeded(rounds=3)
    phone_page.goto("/")
    phone_page.wait_for_function("window.Chart && Chart.getChart(document.getElementById('price-chart'))")
    overflow = phone_page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], overflow
    shot(phone_page, "market-phone")
