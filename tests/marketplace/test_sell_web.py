"""The Sell pages (/sell/): inventory and agent health, enrolment tokens, posting and following offers."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal

import pytest
from django import forms
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from auctions import services as rounds
from auctions.models import LeaseSource, OfferFill
from marketplace.models import Cluster, Gpu, Host, Offer, OfferStatus
from marketplace.sell_views import parse_cents
from metering.models import Anomaly, EnrolmentToken, Envelope, EnvelopeStatus, HostKey
from metering.services import token_hash
from tests.auctions.conftest import CUTOFF, H, clock, live_market  # noqa: F401 (fixtures)
from tests.factories import ClusterFactory, GpuFactory, HostFactory, OfferFactory, next_slot

_seq = itertools.count(1)


def enrol(host: Host, *, reported: dt.datetime | None = None) -> HostKey:
    key = HostKey.objects.create(
        host=host,
        agent_id=f"h_{host.pk:08d}",
        public_key=f"{host.pk:044d}",
        agent_version="1.0.0",
        enrolled_at=timezone.now() - dt.timedelta(days=1),
    )
    if reported is not None:
        Envelope.objects.create(key=key, seq=next(_seq), status=EnvelopeStatus.ACCEPTED, received_at=reported)
    return key


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# --- inventory ---------------------------------------------------------------------------------


def test_inventory_shows_each_hosts_agent_health_in_plain_words(client, acme):
    quiet = HostFactory(cluster=acme.cluster, hostname="quiet-01")
    GpuFactory(host=quiet)
    enrol(acme.host, reported=timezone.now() - dt.timedelta(minutes=2))
    Anomaly.objects.create(
        key="a1", kind="energy_mismatch", host=acme.host, message="energy far off", created_at=timezone.now()
    )
    client.force_login(acme.viewer)
    page = text(client.get("/sell/"))
    assert "Reporting" in page and "2 min ago" in page
    row = re.search(r"quiet-01.*?</tr>", page)
    assert row and "Not enrolled" in row.group(0) and "never reported" in row.group(0)
    assert '<span class="badge bad">1</span>' in page  # the open anomaly, counted on its host
    assert "/billing/earnings/" in page


def test_inventory_never_shows_another_teams_hosts_and_their_pages_are_404(client, acme, beta):
    client.force_login(acme.owner)
    page = text(client.get("/sell/"))
    assert acme.host.hostname in page and beta.host.hostname not in page
    assert client.get(f"/sell/hosts/{beta.host.pk}/").status_code == 404
    assert client.post(f"/sell/hosts/{beta.host.pk}/token/").status_code == 404
    assert not EnrolmentToken.objects.exists()


def test_inventory_page_is_constant_in_queries(client, acme, django_assert_max_num_queries):
    for i in range(30):
        host = HostFactory(cluster=ClusterFactory(team=acme.team, name=f"c{i:02d}"), hostname=f"n{i:02d}")
        GpuFactory.create_batch(2, host=host)
        enrol(host, reported=timezone.now())
    client.force_login(acme.owner)
    with django_assert_max_num_queries(17):  # 30 hosts, 30 clusters, 60 GPUs: fewer queries than rows
        response = client.get("/sell/")
    assert response.status_code == 200 and "Page 1 of 2" in text(response)


def test_cluster_form_shows_the_services_refusal_next_to_the_field(client, acme):
    client.force_login(acme.trader)
    response = client.post("/sell/clusters/new/", {"name": "main", "region": "eu", "interconnect": "roce"})
    assert response.status_code == 422
    assert re.search(r'id="field-name".*already has a cluster named', text(response))
    response = client.post("/sell/clusters/new/", {"name": "fra-1", "region": "eu", "interconnect": "roce"})
    assert response.status_code == 302
    assert Cluster.objects.filter(team=acme.team, name="fra-1", region="eu").exists()


def test_a_viewer_cannot_change_inventory(client, acme):
    client.force_login(acme.viewer)
    assert "Create a cluster" not in text(client.get("/sell/"))
    response = client.post("/sell/clusters/new/", {"name": "x", "region": "eu", "interconnect": "roce"})
    assert response.status_code == 403 and "owner or trader" in text(response)
    assert not Cluster.objects.filter(name="x").exists()


def test_register_a_host_then_add_a_gpu_with_errors_in_words(client, acme):
    client.force_login(acme.owner)
    response = client.post("/sell/hosts/new/", {"cluster": acme.cluster.pk, "hostname": "node-9"})
    host = Host.objects.get(cluster=acme.cluster, hostname="node-9")
    assert response["Location"] == f"/sell/hosts/{host.pk}/"
    response = client.post(f"/sell/hosts/{host.pk}/gpus/new/", {"gpu_model": "H100-SXM-80GB", "uuid": "0000"})
    assert response.status_code == 422 and "looks like &#x27;GPU-…&#x27;" in text(response)
    client.post(f"/sell/hosts/{host.pk}/gpus/new/", {"gpu_model": "H100-SXM-80GB", "uuid": "GPU-abc-123"})
    assert Gpu.objects.get(uuid="GPU-abc-123").host == host


# --- enrolment ---------------------------------------------------------------------------------


def test_enrolment_token_and_command_are_shown_once(client, acme):
    client.force_login(acme.trader)
    response = client.post(f"/sell/hosts/{acme.host.pk}/token/")
    assert response.status_code == 302
    page = text(client.get(response["Location"]))
    found = re.search(r"gridx-agent enroll --server http://testserver --token (\S+) gridx-agent run", page)
    assert found, page
    token = found.group(1)
    assert EnrolmentToken.objects.get(host=acme.host).token_sha256 == token_hash(token)
    assert "shown only once" in page
    again = text(client.get(f"/sell/hosts/{acme.host.pk}/"))
    assert token not in again and "Create an enrolment token" in again


def test_rotation_command_forces_a_new_key_and_revoke_needs_a_confirmation(client, acme):
    enrol(acme.host, reported=timezone.now())
    client.force_login(acme.owner)
    page = text(client.get(client.post(f"/sell/hosts/{acme.host.pk}/rotate/")["Location"]))
    assert re.search(r"gridx-agent enroll --server \S+ --token \S+ --force gridx-agent run", page)
    client.post(f"/sell/hosts/{acme.host.pk}/revoke/")
    assert HostKey.objects.get(host=acme.host).status == "active"  # not ticked: nothing revoked
    page = text(client.post(f"/sell/hosts/{acme.host.pk}/revoke/", {"confirm": "yes"}, follow=True))
    assert HostKey.objects.get(host=acme.host).status == "revoked"
    assert "Revoked 1 agent key" in page and "Revoked</span>" in page


def test_a_host_without_gpus_is_told_to_add_them_before_enrolling(client, acme):
    bare = HostFactory(cluster=acme.cluster)
    client.force_login(acme.owner)
    page = text(client.post(f"/sell/hosts/{bare.pk}/token/", follow=True))
    assert "no GPUs yet: add its GPUs" in page
    assert not EnrolmentToken.objects.exists()


def test_a_viewer_cannot_create_enrolment_tokens(client, acme):
    client.force_login(acme.viewer)
    assert client.post(f"/sell/hosts/{acme.host.pk}/token/").status_code == 403
    assert not EnrolmentToken.objects.exists()


# --- posting offers ----------------------------------------------------------------------------


@given(st.integers(min_value=1, max_value=10**9))
def test_dollars_typed_with_cents_are_stored_as_those_integer_cents(cents):
    assert parse_cents(f"{Decimal(cents) / 100:.2f}") == cents
    assert parse_cents(f"${Decimal(cents) / 100:,.2f}") == cents


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=9))
def test_fractions_of_a_cent_are_refused_with_both_neighbours_suggested(cents, tenth):
    typed = f"{Decimal(cents) / 100:.2f}{tenth}"
    with pytest.raises(forms.ValidationError) as refused:
        parse_cents(typed)
    message = refused.value.messages[0]
    assert "fraction of a cent" in message
    assert f"{Decimal(cents) / 100:.2f}" in message and f"{Decimal(cents + 1) / 100:.2f}" in message


def offer_post(client, acme, **changes):
    start = next_slot(1)
    data = {
        "gpu_model": "H100-SXM-80GB",
        "cluster": acme.cluster.pk,
        "gpus": 8,
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (start + dt.timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M"),
        "reserve": "2.50",
    }
    data.update(changes)
    return client.post("/sell/offers/new/", data)


def test_the_offer_form_starts_with_the_next_24_hours_in_utc(client, acme):
    client.force_login(acme.trader)
    page = text(client.get("/sell/offers/new/"))
    start = next_slot(0)
    assert f'value="{start:%Y-%m-%dT%H:%M}"' in page
    assert f'value="{start + dt.timedelta(hours=24):%Y-%m-%dT%H:%M}"' in page
    assert "Times are in UTC" in page and "Next 7 days" in page


def test_an_offer_is_posted_in_integer_cents_and_opens_its_page(client, acme):
    client.force_login(acme.trader)
    response = offer_post(client, acme, reserve="$2.5")
    offer = Offer.objects.get(team=acme.team)
    assert response["Location"] == f"/sell/offers/{offer.pk}/"
    assert (offer.reserve_cents_per_gpu_hour, offer.gpus, offer.placed_by) == (250, 8, acme.trader)
    page = text(client.get(response["Location"]))
    assert f"Offer {offer.pk} posted" in page and "$2.50" in page and "Not filled yet" in page


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"reserve": "2.505"}, "reserve", "has a fraction of a cent; use 2.50 or 2.51"),
        ({"reserve": "0"}, "reserve", "must be more than $0.00"),
        ({"reserve": "two"}, "reserve", "a number of dollars such as 2.50"),
        ({"gpus": 17}, "gpus", "has 16 H100-SXM-80GB GPUs and 0 are already offered"),
        ({"gpus": ""}, "gpus", "Say how many GPUs you offer"),
        ({"start": "2020-01-01T10:00"}, "start", "is in the past; the earliest you can use is"),
        (
            {"start": next_slot(1).strftime("%Y-%m-%dT%H:30")},
            "start",
            "is not on the 60-minute slot grid; use",
        ),
        ({"end": next_slot(1).strftime("%Y-%m-%dT%H:%M")}, "end", "end must be after start"),
    ],
)
def test_offer_errors_are_next_to_the_field_in_words(client, acme, changes, field, words):
    client.force_login(acme.trader)
    response = offer_post(client, acme, **changes)
    assert response.status_code == 422
    block = re.search(rf'id="field-{field}".*?</div>', text(response))
    assert block and words in block.group(0).replace("&#x27;", "'"), text(response)
    assert not Offer.objects.exists()


def test_a_viewer_cannot_post_offers(client, acme):
    client.force_login(acme.viewer)
    assert "Your role cannot post offers" in text(client.get("/sell/offers/new/"))
    assert offer_post(client, acme).status_code == 403
    assert not Offer.objects.exists()


def test_an_offer_cannot_name_another_teams_cluster(client, acme, beta):
    client.force_login(acme.trader)
    response = offer_post(client, acme, cluster=beta.cluster.pk)
    assert response.status_code == 422 and "Pick one of your clusters" in text(response)
    assert not Offer.objects.exists()


# --- my offers, fills and revenue ----------------------------------------------------------------


def test_my_offers_show_fills_and_revenue_after_a_round_clears(client, acme, live_market, clock):  # noqa: F811
    clock.move_to(CUTOFF + dt.timedelta(seconds=5))
    rounds.round_close_due()
    assert rounds.round_clear(round_id=live_market.round.pk) == "cleared"
    fill = OfferFill.objects.get(offer=live_market.offer)
    revenue = sum(s.revenue_cents for s in LeaseSource.objects.filter(offer=live_market.offer))
    assert fill.gpu_hours_sold > 0 and revenue > 0
    client.force_login(acme.viewer)
    listing = text(client.get("/sell/offers/?status=live"))
    cents = f"${revenue // 100:,}.{revenue % 100:02d}"
    assert f'<td class="num">{fill.gpu_hours_sold} <span class="muted">in 1 round</span>' in listing
    assert cents in listing
    detail = text(client.get(f"/sell/offers/{live_market.offer.pk}/"))
    assert f"<td>{live_market.round.number}</td>" in detail and cents in detail
    source = LeaseSource.objects.filter(offer=live_market.offer).select_related("lease").first()
    assert f"#{source.lease_id}" in detail


def test_offers_filter_by_status_and_withdraw(client, acme, gpu_catalogue):
    live = OfferFactory(cluster=acme.cluster, gpus=4)
    gone = OfferFactory(cluster=acme.cluster, gpus=4, status=OfferStatus.CANCELLED)
    client.force_login(acme.trader)
    listing = text(client.get("/sell/offers/?status=cancelled"))
    assert f"#{gone.pk}<" in listing and f"#{live.pk}<" not in listing
    page = text(client.post(f"/sell/offers/{live.pk}/withdraw/", {"next": "/sell/offers/"}, follow=True))
    live.refresh_from_db()
    assert live.status == OfferStatus.CANCELLED and f"Offer {live.pk} withdrawn" in page


def test_another_teams_offer_is_404_and_cannot_be_withdrawn(client, acme, beta):
    theirs = OfferFactory(cluster=beta.cluster)
    client.force_login(acme.owner)
    assert client.get(f"/sell/offers/{theirs.pk}/").status_code == 404
    assert client.post(f"/sell/offers/{theirs.pk}/withdraw/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == OfferStatus.LIVE


def test_a_viewer_cannot_withdraw_offers(client, acme):
    mine = OfferFactory(cluster=acme.cluster)
    client.force_login(acme.viewer)
    assert client.post(f"/sell/offers/{mine.pk}/withdraw/").status_code == 403
    mine.refresh_from_db()
    assert mine.status == OfferStatus.LIVE


def test_offer_list_is_constant_in_queries(client, acme, django_assert_max_num_queries):
    for _ in range(40):
        OfferFactory(cluster=acme.cluster, gpus=1, start=next_slot(1), end=next_slot(2))
    client.force_login(acme.owner)
    with django_assert_max_num_queries(8):
        response = client.get("/sell/offers/")
    assert response.status_code == 200 and text(response).count("Withdraw</button>") == 25
