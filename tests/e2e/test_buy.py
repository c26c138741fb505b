"""Buying in a browser: a bid corrected as you type, its round cleared, the outcome and reason on
My bids, and a lease page whose chart draws the delivered GPU-seconds."""

from __future__ import annotations

import datetime as dt

from django.test import Client
from playwright.sync_api import expect

from auctions import services
from auctions.models import Lease, Round, RoundStatus
from marketplace import services as market
from marketplace.models import Role
from marketplace.specs import OfferSpec
from tests.auctions.conftest import bid_spec
from tests.conftest import _side
from tests.e2e.conftest import login, shot
from tests.factories import MembershipFactory, UserFactory
from tests.metering.conftest import GPU_A, GPU_B, START, Seller, make_lease
from tests.metering.wire import report, wire_host

H = dt.timedelta(hours=1)


def test_place_a_bid_fix_it_as_you_type_then_see_it_win_and_a_loser_reason(page, db):
    seller, buyer = _side("Acme"), _side("Beta")
    round_ = services.round_open()
    start = round_.horizon_start
    market.offer_post(
        team=seller.team,
        actor=seller.trader,
        spec=OfferSpec(
            cluster_id=seller.cluster.pk,
            gpu_model="H100-SXM-80GB",
            gpus=16,
            start=start,
            end=start + 24 * H,
            reserve_cents_per_gpu_hour=180,
        ),
    )
    # A bid nobody can serve (no one offers L4s), to show a loser's reason.
    loser = services.bid_submit(
        team=buyer.team,
        actor=buyer.trader,
        idempotency_key="l4",
        spec=bid_spec(start, gpu_models=("L4-24GB",)),
    ).order

    login(page, buyer.trader)
    page.goto("/buy/new/")
    page.get_by_label("NVIDIA H100 SXM 80GB").check()
    limit = page.get_by_label("Limit ($ per GPU-hour)")
    limit.press_sequentially("2.505")
    error = page.locator("#id_row-0-limit_error")
    expect(error).to_contain_text("fraction of a cent")
    expect(limit).to_have_attribute("aria-invalid", "true")
    shot(page, "buy-new-bid")
    limit.fill("4.00")
    expect(error).to_be_empty()
    expect(limit).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#row-0-total")).to_contain_text("$128.00")  # $4 x 8 GPUs x 4 hours
    page.get_by_role("button", name="Place bid").click()
    expect(page.get_by_role("status")).to_contain_text(f"it will be cleared in round {round_.number}")

    services.round_close(round_id=round_.pk)
    assert services.round_clear(round_id=round_.pk) == "cleared"
    page.goto("/buy/")
    won = page.locator("tr", has_text="H100-SXM-80GB")
    expect(won.locator(".outcome")).to_contain_text(f"Won in round {round_.number}")
    lost = page.locator(f"#bid-{loser.pk}")
    expect(lost.locator(".outcome")).to_contain_text("No offer could serve it")
    shot(page, "buy-my-bids")
    won.get_by_role("link", name="lease").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Lease")
    expect(page.locator("#delivery-chart")).to_have_attribute("data-points", "2")


def test_the_lease_page_charts_delivered_gpu_seconds(page, db):
    seller_side = _side("Sellco")
    host = seller_side.host
    gpus = list(host.gpus.order_by("pk")[:2])
    gpus[0].uuid, gpus[1].uuid = GPU_A, GPU_B
    for gpu in gpus:
        gpu.save(update_fields=["uuid"])
    seller = Seller(team=seller_side.team, owner=seller_side.owner, host=host, gpus=gpus)
    wire = wire_host(Client(), seller.team, host)
    for i in range(30):
        minute = START + dt.timedelta(minutes=i)
        wire.post(wire.envelope([report(GPU_A, minute), report(GPU_B, minute, healthy=i < 20)]))
    lease = make_lease(seller, START, START + dt.timedelta(minutes=30), gpus=gpus)
    buyer = UserFactory()
    MembershipFactory(team=lease.team, user=buyer, role=Role.VIEWER)

    login(page, buyer)
    page.goto(f"/buy/leases/{lease.pk}/")
    chart = page.locator("#delivery-chart")
    expect(chart).to_have_attribute("data-points", "4")
    expect(page.locator("#chart-status")).to_contain_text("3000 of 3600 GPU-seconds delivered")
    points = page.evaluate(
        "() => document.getElementById('delivery-chart').chart.data.datasets[0].data.map(p => p.y)"
    )
    assert points == sorted(points) and points[-1] == 3000
    shot(page, "buy-lease")
    assert Lease.objects.count() == 1 and Round.objects.filter(status=RoundStatus.CLEARED).count() == 1


def test_the_bid_form_fits_a_phone_and_works_by_keyboard(phone_page, db):
    buyer = _side("Beta")
    services.round_open()
    login(phone_page, buyer.trader)
    phone_page.goto("/buy/new/")
    width = phone_page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    phone_page.get_by_label("NVIDIA H100 SXM 80GB").focus()
    phone_page.keyboard.press("Space")
    phone_page.get_by_label("Limit ($ per GPU-hour)").focus()
    phone_page.keyboard.type("3")
    expect(phone_page.locator("#row-0-total")).to_contain_text("$96.00")  # $3 x 8 GPUs x 4 hours
    phone_page.get_by_role("button", name="Add an alternative").press("Enter")
    expect(phone_page.get_by_role("heading", name="or alternative 1")).to_be_visible()
    assert phone_page.evaluate("() => document.documentElement.scrollWidth") <= 390
