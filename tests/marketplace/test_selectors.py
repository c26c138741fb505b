"""Selectors apply the acting team: no team ever reads another team's orders or inventory."""

from __future__ import annotations

import pytest

from marketplace import selectors
from marketplace.errors import NotFound
from tests.factories import BidFactory, OfferFactory, UserFactory


def test_a_team_lists_only_its_own_bids(acme, beta):
    mine = BidFactory.create_batch(2, team=acme.team)
    BidFactory.create_batch(3, team=beta.team)
    assert {b.pk for b in selectors.bid_list(team=acme.team)} == {b.pk for b in mine}


def test_another_teams_bid_is_not_found_rather_than_forbidden(acme, beta):
    theirs = BidFactory(team=beta.team)
    with pytest.raises(NotFound):
        selectors.bid_get(team=acme.team, bid_id=theirs.pk)
    assert selectors.bid_get(team=beta.team, bid_id=theirs.pk).pk == theirs.pk


def test_a_team_sees_only_its_own_offers_and_inventory(acme, beta):
    OfferFactory(cluster=acme.cluster)
    theirs = OfferFactory(cluster=beta.cluster)
    assert all(o.team_id == acme.team.pk for o in selectors.offer_list(team=acme.team))
    with pytest.raises(NotFound):
        selectors.offer_get(team=acme.team, offer_id=theirs.pk)
    with pytest.raises(NotFound):
        selectors.cluster_get(team=acme.team, cluster_id=beta.cluster.pk)
    with pytest.raises(NotFound):
        selectors.host_get(team=acme.team, host_id=beta.host.pk)
    assert {g.host_id for g in selectors.gpu_list(team=acme.team)} == {acme.host.pk}


def test_a_user_sees_only_the_teams_they_belong_to(acme, beta):
    assert list(selectors.team_list_for_user(user=acme.trader)) == [acme.team]
    with pytest.raises(NotFound):
        selectors.team_get_for_user(user=acme.trader, team_id=beta.team.pk)
    assert not selectors.team_list_for_user(user=UserFactory()).exists()


def test_the_public_summary_counts_bids_without_revealing_them(acme, beta, django_assert_max_num_queries):
    BidFactory.create_batch(3, team=beta.team)
    with django_assert_max_num_queries(8):
        summary = selectors.market_summary()
    assert summary["open_bids"] == 3
    assert "bids" not in summary
