"""HTML routes of the Sell pages (mounted at /sell/ in config/urls.py)."""

from django.urls import URLPattern, URLResolver, path

from . import sell_views as views

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.overview, name="sell"),
    path("clusters/new/", views.cluster_create, name="sell-cluster-create"),
    path("hosts/new/", views.host_create, name="sell-host-create"),
    path("hosts/<int:host_id>/", views.host_detail, name="sell-host"),
    path("hosts/<int:host_id>/gpus/new/", views.gpu_create, name="sell-gpu-create"),
    path("hosts/<int:host_id>/token/", views.host_token, name="sell-host-token"),
    path("hosts/<int:host_id>/rotate/", views.host_rotate, name="sell-host-rotate"),
    path("hosts/<int:host_id>/revoke/", views.host_revoke, name="sell-host-revoke"),
    path("offers/", views.offer_list, name="sell-offers"),
    path("offers/new/", views.offer_new, name="sell-offer-new"),
    path("offers/<int:offer_id>/", views.offer_detail, name="sell-offer"),
    path("offers/<int:offer_id>/withdraw/", views.offer_withdraw, name="sell-offer-withdraw"),
]
