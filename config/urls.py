"""Top-level URL routes."""

from django.contrib import admin
from django.urls import path

from marketplace import views as market_views

urlpatterns = [
    path("", market_views.status_page, name="status"),
    path("healthz", market_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
