"""URL routes of the rounds, bids, offers and leases API (mounted at /api/v1/)."""

from django.urls import URLPattern, URLResolver, path

from . import api

urlpatterns: list[URLPattern | URLResolver] = [
    path("market/rounds", api.RoundListApi.as_view(), name="api-rounds"),
    path("market/rounds/current", api.RoundCurrentApi.as_view(), name="api-round-current"),
    path("market/rounds/<int:number>", api.RoundDetailApi.as_view(), name="api-round"),
    path("market/prices", api.PriceListApi.as_view(), name="api-prices"),
    path("bids", api.BidListApi.as_view(), name="api-bids"),
    path("bids/batch", api.BidBatchApi.as_view(), name="api-bids-batch"),
    path("bids/preview", api.BidPreviewApi.as_view(), name="api-bids-preview"),
    path("bids/<int:bid_id>", api.BidDetailApi.as_view(), name="api-bid"),
    path("bids/<int:bid_id>/cancel", api.BidCancelApi.as_view(), name="api-bid-cancel"),
    path("bids/<int:bid_id>/replace", api.BidReplaceApi.as_view(), name="api-bid-replace"),
    path("offers", api.OfferListApi.as_view(), name="api-offers"),
    path("offers/<int:offer_id>", api.OfferDetailApi.as_view(), name="api-offer"),
    path("leases", api.LeaseListApi.as_view(), name="api-leases"),
    path("leases/<int:lease_id>", api.LeaseDetailApi.as_view(), name="api-lease"),
    path("keys/<int:key_id>/kill", api.ApiKeyKillApi.as_view(), name="api-key-kill"),
]
