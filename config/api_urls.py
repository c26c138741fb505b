"""The REST API: /api/v1/… from each app's api_urls, and the OpenAPI schema and docs."""

from django.urls import include, path

urlpatterns = [
    path("v1/", include("marketplace.api_urls")),
    path("v1/", include("auctions.api_urls")),
    path("v1/metering/", include("metering.api_urls")),
    path("v1/billing/", include("billing.api_urls")),
]
