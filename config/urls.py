"""Top-level URL routes: the web pages, the REST API and its schema, billing, the console, admin."""

from django.contrib import admin
from django.urls import include, path

from marketplace import views as market_views

urlpatterns = [
    path("healthz", market_views.healthz, name="healthz"),
    path("api/", include("config.api_urls")),
    # Web pages, one module of routes per area (templates/<area>/).
    path("buy/", include("auctions.urls")),
    path("sell/", include("marketplace.sell_urls")),
    path("developers/", include("marketplace.developer_urls")),
    path("usage/", include("metering.urls")),
    path("billing/", include("billing.urls")),
    path("console/", include("billing.console_urls")),
    path("admin/", admin.site.urls),
    path("", include("marketplace.urls")),
]

handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
