"""The REST API: /api/v1/… from each app's api_urls, and the OpenAPI schema and its docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("v1/", include("marketplace.api_urls")),
    path("v1/", include("auctions.api_urls")),
    path("v1/metering/", include("metering.api_urls")),
    path("v1/billing/", include("billing.api_urls")),
]
