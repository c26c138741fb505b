"""A seller in the browser: inventory, an offer posted after fixing an error, its fill after a round."""

from __future__ import annotations

import datetime as dt
import re

from playwright.sync_api import expect

from auctions import services as rounds
from auctions.models import LeaseSource, OfferFill
from marketplace.models import Offer
from tests.auctions.conftest import bid_spec
from tests.e2e.conftest import login, shot

H = dt.timedelta(hours=1)


def test_a_seller_posts_an_offer_fixes_an_error_and_sees_its_fill_and_revenue(page, acme, beta):
    round_ = rounds.round_open()
    login(page, acme.trader)
    page.goto("/sell/")
    hosts = page.locator("table").nth(1)
    expect(hosts).to_contain_text(acme.host.hostname)
    expect(hosts).to_contain_text("never reported")
    shot(page, "sell-inventory")

    page.get_by_role("link", name="Post an offer").first.click()
    page.get_by_role("button", name="Next 24 h").click()
    page.get_by_label("GPUs").fill("8")
    page.get_by_label("Reserve price ($ per GPU-hour)").fill("2.505")
    page.get_by_role("button", name="Post offer").click()
    expect(page.locator("#field-reserve .errorlist")).to_contain_text("fraction of a cent; use 2.50 or 2.51")
    assert not Offer.objects.exists()
    page.get_by_label("Reserve price ($ per GPU-hour)").fill("2.50")
    page.get_by_role("button", name="Post offer").click()
    expect(page.get_by_role("status").first).to_contain_text("posted: it takes part in round")
    offer = Offer.objects.get(team=acme.team)
    assert (offer.gpus, offer.reserve_cents_per_gpu_hour, offer.end - offer.start) == (8, 250, 24 * H)

    start = round_.horizon_start
    rounds.bid_submit(
        team=beta.team,
        actor=beta.trader,
        idempotency_key="e2e",
        spec=bid_spec(start, gpus=8, min_gpus=8, duration_hours=2, latest_end=start + 4 * H),
    )
    rounds.round_close(round_id=round_.pk, now=round_.cutoff_at)
    assert rounds.round_clear(round_id=round_.pk) == "cleared"
    fill = OfferFill.objects.get(offer=offer)
    revenue = sum(LeaseSource.objects.filter(offer=offer).values_list("revenue_cents", flat=True))
    assert fill.gpu_hours_sold == 16 and revenue >= 250 * 16

    page.goto("/sell/offers/")
    row = page.locator("tr", has=page.get_by_role("link", name=f"#{offer.pk}"))
    expect(row).to_contain_text("16 in 1 round")
    expect(row).to_contain_text(f"${revenue // 100:,}.{revenue % 100:02d}")
    shot(page, "sell-offers")
    row.get_by_role("link", name=f"#{offer.pk}").click()
    fills = page.locator("table").first
    expect(fills).to_contain_text(str(round_.number))
    expect(fills).to_contain_text("16")


def test_the_window_picker_works_by_keyboard_on_a_phone(phone_page, acme):
    login(phone_page, acme.trader)
    phone_page.goto("/sell/offers/new/")
    phone_page.get_by_role("button", name="Next 7 days").focus()
    phone_page.keyboard.press("Enter")
    start = phone_page.get_by_label("Available from").input_value()
    end = phone_page.get_by_label("Available until").input_value()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00", start), start
    length = dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)
    assert length == 168 * H
    expect(phone_page.locator("#window-summary")).to_contain_text("(168 h)")
    phone_page.get_by_label("Available from").fill(start[:-2] + "37")
    expect(phone_page.locator("#window-summary")).to_contain_text("Rounded the start down to")
    assert phone_page.get_by_label("Available from").input_value() == start
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
