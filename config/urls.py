"""Top-level URL routes: the status page, the REST API and its schema, billing, the console, admin."""

from django.contrib import admin
from django.urls import include, path

from marketplace import views as market_views

urlpatterns = [
    path("", market_views.status_page, name="status"),
    path("healthz", market_views.healthz, name="healthz"),
    path("api/", include("config.api_urls")),
    path("billing/", include("billing.urls")),
    path("console/", include("billing.console_urls")),
    path("admin/", admin.site.urls),
]

handler404 = "config.views.not_found"
handler500 = "config.views.server_error"
