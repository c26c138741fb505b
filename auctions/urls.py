"""HTML routes of the buyer (mounted at /buy/): place, preview, list, replace and cancel bids; leases."""

from django.urls import URLPattern, URLResolver, path

from . import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.bid_list, name="buy-bids"),
    path("new/", views.bid_new, name="buy-new"),
    path("new/validate/", views.bid_validate, name="buy-validate"),
    path("new/rows/", views.bid_rows, name="buy-rows"),
    path("new/preview/", views.bid_preview, name="buy-preview"),
    path("bids/<int:bid_id>/", views.bid_detail, name="buy-bid"),
    path("bids/<int:bid_id>/edit/", views.bid_edit, name="buy-bid-edit"),
    path("bids/<int:bid_id>/cancel/", views.bid_cancel, name="buy-bid-cancel"),
    path("bids/<int:bid_id>/proof.json", views.bid_proof, name="buy-bid-proof"),
    path("leases/", views.lease_list, name="buy-leases"),
    path("leases/<int:lease_id>/", views.lease_detail, name="buy-lease"),
]
